// Package tokenizer turns text into token ids and back, as llama.cpp does, from the vocabulary in a GGUF file.
//
// A Tokenizer is built from the tokenizer.ggml.* metadata of a GGUF file
// (FromGGUF) or from the same data in a Vocab (New), with llama.cpp's rules
// for whatever the metadata leaves out: the default special tokens and
// BOS/EOS flags of each tokenizer model, the end-of-generation tokens it
// recognises by their text, and its per-model token attribute fixes.
//
// Tokenizer models (tokenizer.ggml.model):
//
//   - "llama": SentencePiece BPE (llama.cpp's SPM): spaces as ▁, a space
//     prefix (tokenizer.ggml.add_space_prefix, default on), merges of the
//     highest-scoring pair first, byte fallback to <0xNN> tokens.
//   - "gpt2": byte-level BPE: the text is split by the pre-tokenizer that
//     tokenizer.ggml.pre names (86 of llama.cpp's names, see PreTokenizers),
//     bytes are mapped to GPT-2's printable symbols, and each piece is merged
//     by rank (tokenizer.ggml.merges).
//   - "gemma4": BPE on raw UTF-8 with ▁ for spaces and <0xNN> byte fallback.
//   - "bert": WordPiece (llama.cpp's WPM) with BERT's normaliser.
//
// Unigram ("t5"), RWKV and PLaMo-2 vocabularies, and the kimi-k2, afmoe and
// youtu pre-tokenizers, are rejected by New with an error.
//
// Encode matches llama_tokenize (add_special, parse_special), Decode and
// Detokenize match llama_detokenize, Piece matches llama_token_to_piece.
// StreamDecoder turns generated tokens into text one at a time without ever
// emitting half of a UTF-8 sequence.
//
// The pre-tokenizer regexes need look-ahead, which Go's regexp lacks: those
// llama.cpp hand-codes (GPT-2, Llama 3) are hand-coded here too, as is
// Qwen2's; the others run on github.com/dlclark/regexp2, over the same
// category-collapsed text llama.cpp gives std::regex, so that they match what
// llama.cpp matches (including its quirks, such as \p{S} leaving out '~').
package tokenizer
