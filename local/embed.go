package local

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"math"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/chat"
	"github.com/stepflash/stepflash/engine"
	"github.com/stepflash/stepflash/model"
)

// embedInFlight bounds one request's inputs in the engine at once, so that
// a large batch queues behind itself rather than filling the engine's queue
// (other requests' slots) or failing with a 503.
const embedInFlight = 8

// PoolingFor is how a model's embeddings are pooled: the GGUF's
// pooling_type (mean, cls, last) when it names one, else mean — over a
// generative model's final hidden states, the mean of every position is
// the common choice (llama.cpp's --pooling mean, sentence-transformers).
// A reranker's (rank) has no embedding: PoolNone.
func PoolingFor(cfg *model.Config) engine.Pooling {
	switch cfg.PoolingType {
	case 1:
		return engine.PoolMean
	case 2:
		return engine.PoolCLS
	case 3:
		return engine.PoolLast
	case 4:
		return engine.PoolNone
	}
	return engine.PoolMean
}

// Embed answers POST /v1/embeddings (checked by backend.CheckEmbedding): each input is tokenized as the model's
// metadata says (its BOS, and EOS where it adds one), run through the
// model without generating, and its final hidden states pooled
// (Model.Pooling) and normalised to unit length, as llama.cpp's
// --embd-normalize 2.
func (b *Backend) Embed(ctx context.Context, req *api.EmbeddingRequest) (*api.EmbeddingResponse, error) {
	m := &b.m
	if b.pooling == engine.PoolNone {
		return nil, api.InvalidRequest(api.CodeInvalidValue, "model", "This model is a reranker (pooling_type rank): it scores pairs and has no embeddings.")
	}
	width := m.Config.NEmbd
	if d := req.Dimensions; d != nil && *d != width {
		return nil, api.InvalidRequest(api.CodeInvalidValue, "dimensions", "Invalid 'dimensions': %d; this model's embeddings have %d dimensions and it is not trained to be truncated.", *d, width)
	}
	var prompts [][]int32
	vocab := m.Tok.VocabSize()
	for _, t := range req.Input.Texts {
		prompts = append(prompts, m.Tok.Encode(t, true, true))
	}
	for i, ids := range req.Input.Tokens {
		for k, id := range ids {
			if id < 0 || int(id) >= vocab {
				return nil, api.InvalidRequest(api.CodeInvalidValue, "input", "Invalid 'input': token id %d at [%d][%d] is outside the vocabulary of %d tokens.", id, i, k, vocab)
			}
		}
		prompts = append(prompts, ids)
	}
	ctxLen := m.Engine.Context()
	total := 0
	for i, p := range prompts {
		if len(p) > ctxLen {
			e := api.ContextLengthExceeded("input", ctxLen, len(p), 0)
			e.Message = "Input " + strconv.Itoa(i) + ": " + e.Message
			return nil, e
		}
		total += len(p)
	}

	vecs := make([][]float32, len(prompts))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		failOnce sync.Once
		failed   error // the first input's failure, which cancels the rest
		failedAt int
	)
	slots := make(chan struct{}, min(embedInFlight, max(1, m.QueueLimit/2)))
	var wg sync.WaitGroup
	for i, p := range prompts {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			res, err := m.Engine.Generate(ctx, engine.Request{Prompt: p, Pooling: b.pooling}, nil)
			if err == nil && ctx.Err() != nil {
				err = ctx.Err() // cancelled: the engine stopped it unfinished
			}
			if err == nil && len(res.Embedding) != width {
				err = api.Internal("the engine returned %d values for input %d's embedding; the model's width is %d", len(res.Embedding), i, width)
			}
			if err != nil {
				failOnce.Do(func() { failed, failedAt = err, i; cancel() })
				return
			}
			vecs[i] = normalize(res.Embedding)
		}()
	}
	wg.Wait()
	if failed != nil {
		return nil, (&job{b: b}).engineError(failed, len(prompts[failedAt]))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	resp := &api.EmbeddingResponse{Object: "list", Data: make([]api.Embedding, len(vecs)),
		Usage:     api.NewUsage(total, 0, 0, 0),
		Stepflash: &api.Extension{Backend: "local"}}
	for i, v := range vecs {
		resp.Data[i] = api.Embedding{Object: "embedding", Index: i, Embedding: v}
		if req.EncodingFormat == "base64" {
			resp.Data[i].Embedding = base64Floats(v)
		}
	}
	return resp, nil
}

// normalize scales v to unit Euclidean length (a zero vector stays zero),
// summing in float64 as llama.cpp's common_embd_normalize does.
func normalize(v []float32) []float32 {
	sum := 0.0
	for _, x := range v {
		sum += float64(x) * float64(x)
	}
	if sum == 0 {
		return v
	}
	norm := math.Sqrt(sum)
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(float64(x) / norm)
	}
	return out
}

// base64Floats is OpenAI's base64 encoding_format: the little-endian
// float32 bytes of v.
func base64Floats(v []float32) string {
	buf := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(x))
	}
	return base64.StdEncoding.EncodeToString(buf)
}

// Tokenize answers POST /tokenize: the text (content or prompt) or the
// messages rendered by the chat template, as token ids or {id, piece}.
func (b *Backend) Tokenize(ctx context.Context, req *api.TokenizeRequest) (*api.TokenizeResponse, error) {
	m := &b.m
	var ids []int32
	texts := 0
	if req.Content != nil {
		texts++
	}
	if req.Prompt != nil {
		texts++
	}
	switch {
	case texts+boolInt(req.Messages != nil) != 1:
		return nil, api.InvalidRequest(api.CodeInvalidValue, "content", "Send exactly one of 'content' (llama-server), 'prompt' or 'messages' (vLLM).")
	case req.Messages != nil:
		if len(req.Messages) == 0 {
			return nil, api.InvalidRequest(api.CodeInvalidValue, "messages", "Invalid 'messages': empty array.")
		}
		creq := &api.ChatCompletionRequest{Messages: req.Messages, Tools: req.Tools}
		if req.AddGenerationPrompt != nil && !*req.AddGenerationPrompt {
			p, err := b.renderOnly(creq)
			if err != nil {
				return nil, err
			}
			ids = p
			break
		}
		p, err := b.prepareChat(ctx, creq)
		if err != nil {
			return nil, err
		}
		ids = p.img.Tokens
	default:
		text := req.Content
		if text == nil {
			text = req.Prompt
		}
		// llama-server adds no special tokens unless asked; vLLM adds them
		// unless told not to.
		special := req.Content == nil
		if req.AddSpecialTokens != nil {
			special = *req.AddSpecialTokens
		}
		if req.AddSpecial != nil {
			special = *req.AddSpecial
		}
		parse := req.ParseSpecial == nil || *req.ParseSpecial
		ids = m.Tok.Encode(*text, special, parse)
	}
	resp := &api.TokenizeResponse{Tokens: make([]any, len(ids)), Count: len(ids), MaxModelLen: m.Engine.Context()}
	for i, id := range ids {
		if !req.WithPieces {
			resp.Tokens[i] = id
			continue
		}
		piece := m.Tok.PieceSpecial(id)
		if utf8.Valid(piece) {
			resp.Tokens[i] = api.TokenPiece{ID: id, Piece: string(piece)}
		} else {
			resp.Tokens[i] = api.TokenPiece{ID: id, Piece: bytesOf(piece)}
		}
	}
	return resp, nil
}

// renderOnly tokenizes a conversation rendered without the generation
// prompt (vLLM's add_generation_prompt false). Images are not read.
func (b *Backend) renderOnly(req *api.ChatCompletionRequest) ([]int32, error) {
	m := &b.m
	msgs, images, e := convertMessages(req.Messages)
	if e != nil {
		return nil, e
	}
	if len(images) > 0 {
		return nil, api.InvalidRequest(api.CodeInvalidValue, "add_generation_prompt", "Messages with images are tokenized with add_generation_prompt true only.")
	}
	opts := chat.RenderOptions{BOS: m.Tok.TokenText(m.Tok.BOS()), EOS: m.Tok.TokenText(m.Tok.EOS()), Tools: convertTools(req.Tools)}
	text, err := b.tmpl.Render(msgs, opts)
	if err != nil {
		return nil, api.InvalidRequest(api.CodeInvalidValue, "messages", "The chat template rejected the conversation: %v", err)
	}
	ids := m.Tok.Encode(text, false, true)
	if bos := m.Tok.BOS(); m.Tok.AddBOS() && bos >= 0 && (len(ids) == 0 || ids[0] != bos) {
		ids = append([]int32{bos}, ids...)
	}
	return ids, nil
}

// Detokenize answers POST /detokenize: the text of token ids, special
// tokens written out.
func (b *Backend) Detokenize(_ context.Context, req *api.DetokenizeRequest) (*api.DetokenizeResponse, error) {
	vocab := b.m.Tok.VocabSize()
	for i, id := range req.Tokens {
		if id < 0 || int(id) >= vocab {
			return nil, api.InvalidRequest(api.CodeInvalidValue, "tokens", "Invalid 'tokens': token id %d at index %d is outside the vocabulary of %d tokens.", id, i, vocab)
		}
	}
	text := b.m.Tok.Detokenize(req.Tokens, false, true)
	return &api.DetokenizeResponse{Content: text, Prompt: text}, nil
}

// CountChat is the number of prompt tokens the chat request would use:
// its rendered conversation, tools and images, exactly as Chat builds it.
func (b *Backend) CountChat(ctx context.Context, req *api.ChatCompletionRequest) (int, error) {
	p, err := b.prepareChat(ctx, req)
	if err != nil {
		return 0, err
	}
	return len(p.img.Tokens), nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
