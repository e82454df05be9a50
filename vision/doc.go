// Package vision turns images into a language model's input embeddings: GGUF vision encoders (clip projectors as llama.cpp writes them: idefics3, gemma3, qwen2vl_merger, qwen2.5vl_merger) and their preprocessing.
//
// # Use
//
// Open (or Load) a projector GGUF ("mmproj", general.architecture clip);
// Encoder.Embed takes any image.Image and returns the segments that replace
// the media marker in the prompt, in order: Segment.Text pieces, to be
// tokenized with the text model's tokenizer with special tokens parsed, and
// Segment.Embeddings spans, one position per row (Config.ProjectionDim
// floats each, the text model's embedding width), fed in place of token
// embeddings; a span with Rows and Cols set is a grid read with 2-D
// positions. The steps are also available one by one: Prepare (decode to RGB
// u8, slicing, resizing), Encode (the ViT and the projector, batched over the
// pictures' patches) and Layout.
//
// # Numerics
//
// Everything runs on the tensor package's kernels and thread pool: every
// linear layer is one tensor.MatMul over all patches of all pictures of a
// call, attention runs tiles of queries through tensor.AttnScores,
// tensor.Softmax (ggml's expf) and tensor.AttnPV, span by span (a picture
// or a window). LayerNorm follows ggml_norm (float64 sums, float32
// scale). GELU emulates ggml's CPU backend, which looks tanh-GELU up in a
// table of fp16 values (input rounded to fp16, output fp16); that matches
// llama.cpp's image embeddings to about 5e-4, exact GELU only to 3e-3.
//
// # Projector families
//
// Projector types register themselves by their clip.projector_type name,
// like the model package's architectures: each is one file whose init calls
// Register with a Constructor.
//
//   - idefics3.go (SmolVLM, Idefics3): the shared pre-norm ViT of vit.go,
//     pixel shuffle and one linear layer, with llama.cpp's llava-uhd-style
//     slicing into a grid of image_size tiles plus an overview.
//
//   - gemma3.go (Gemma 3, SigLIP): the same encoder on one picture (the
//     image letterboxed as llama.cpp does), a 2-D average pool by
//     clip.vision.projector.scale_factor, RMSNorm (mm.soft_emb_norm) and
//     mm.input_projection; the layout is <start_of_image> embeddings
//     <end_of_image>, the embeddings marked Segment.Bidirectional (the
//     text model reads them with attention both ways, as llama.cpp does).
//
//   - qwen2vl.go (Qwen2-VL: qwen2vl_merger; Qwen2.5-VL: qwen2.5vl_merger):
//     dynamic resolution (SmartResize: sides multiples of 2*PatchSize, 8 to
//     4,096 tokens, no slices), patches from two convolution kernels
//     summed, the encoder with 2-D RoPE on q and k (ViT.rope: the head
//     split into row and column sections) and no position embeddings
//     (LayerNorm and quick GELU for Qwen2-VL; RMSNorm, SwiGLU and
//     attention within 112-pixel windows on the layers not in
//     clip.vision.n_wa_pattern for Qwen2.5-VL: the rows are ordered window
//     by window, as llama.cpp does, so a window is one span of the
//     attention), then each 2x2 block of patches through mm.0, GELU, mm.2.
//     The layout is <|vision_start|> embeddings <|vision_end|>, the
//     embeddings a Segment.Rows x Segment.Cols grid that the text model
//     (the model package's qwen2vl) reads with M-RoPE positions.
//
// Unsupported projector types are refused at load with the list of the
// supported ones.
//
// # Hostile files
//
// Every hyperparameter is range-checked, every tensor's type and shape is
// checked against the metadata before its data is used, and sizes that
// would make preprocessing or encoding unbounded (huge grids, patch
// counts) are refused with an error: a malformed file never panics.
package vision
