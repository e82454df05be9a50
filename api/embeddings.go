package api

// EmbeddingRequest is the body of POST /v1/embeddings.
type EmbeddingRequest struct {
	Model string `json:"model"`
	// Input is a string, an array of strings, an array of token ids or an
	// array of token id arrays, as OpenAI's (and the legacy prompt's) four
	// forms.
	Input *Prompt `json:"input"`
	// EncodingFormat is "float" (default) or "base64": the vector's
	// little-endian float32 bytes, base64-encoded, as OpenAI's.
	EncodingFormat string `json:"encoding_format,omitempty"`
	// Dimensions asks for a shorter vector; only the model's own width is
	// accepted (the models served here are not trained to be truncated).
	Dimensions *int   `json:"dimensions,omitempty"`
	User       string `json:"user,omitempty"`
}

// EmbeddingResponse is the answer of POST /v1/embeddings.
type EmbeddingResponse struct {
	Object string      `json:"object"` // "list"
	Data   []Embedding `json:"data"`
	Model  string      `json:"model"`
	Usage  *Usage      `json:"usage"`
	// Stepflash is the extension object (backend label; no effort applies).
	Stepflash *Extension `json:"stepflash,omitempty"`
}

// Embedding is one input's vector. Embedding holds []float32 for the
// float format and a string for base64.
type Embedding struct {
	Object    string `json:"object"` // "embedding"
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"`
}

// TokenizeRequest is the body of POST /tokenize: llama-server's shape
// (content, add_special, parse_special, with_pieces) and vLLM's (prompt,
// or messages rendered by the model's chat template; add_special_tokens,
// add_generation_prompt). Model is optional with one served model.
type TokenizeRequest struct {
	Model string `json:"model,omitempty"`
	// Content (llama-server) or Prompt (vLLM): the text; or Messages.
	Content  *string   `json:"content,omitempty"`
	Prompt   *string   `json:"prompt,omitempty"`
	Messages []Message `json:"messages,omitempty"`
	// AddSpecial (llama-server, default false) or AddSpecialTokens (vLLM,
	// default true): add the model's BOS/EOS as its metadata says.
	AddSpecial       *bool `json:"add_special,omitempty"`
	AddSpecialTokens *bool `json:"add_special_tokens,omitempty"`
	// ParseSpecial (default true) turns control-token text such as
	// <|im_end|> into its token.
	ParseSpecial *bool `json:"parse_special,omitempty"`
	// WithPieces returns {id, piece} objects instead of bare ids.
	WithPieces bool `json:"with_pieces,omitempty"`
	// AddGenerationPrompt (messages only, default true) ends the rendered
	// chat with the assistant's turn opening.
	AddGenerationPrompt *bool  `json:"add_generation_prompt,omitempty"`
	Tools               []Tool `json:"tools,omitempty"`
}

// TokenizeResponse answers POST /tokenize. Tokens holds ids, or
// TokenPiece values with with_pieces. Count and MaxModelLen are vLLM's.
type TokenizeResponse struct {
	Tokens      []any `json:"tokens"`
	Count       int   `json:"count"`
	MaxModelLen int   `json:"max_model_len,omitempty"`
}

// TokenPiece is one token with its text: a string when the piece is valid
// UTF-8, else its bytes (as llama-server).
type TokenPiece struct {
	ID    int32 `json:"id"`
	Piece any   `json:"piece"`
}

// DetokenizeRequest is the body of POST /detokenize.
type DetokenizeRequest struct {
	Model  string  `json:"model,omitempty"`
	Tokens []int32 `json:"tokens"`
}

// DetokenizeResponse answers POST /detokenize: llama-server's content and
// vLLM's prompt, the same text.
type DetokenizeResponse struct {
	Content string `json:"content"`
	Prompt  string `json:"prompt"`
}
