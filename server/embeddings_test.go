package server_test

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/openai/openai-go/v3"
	"github.com/stepflash/stepflash/engine"
	"github.com/stepflash/stepflash/server"
)

// TestEmbeddingsSDK runs the official OpenAI SDK's Embeddings.New against
// a real model: every input gets a unit vector of the model's width equal
// to the engine's mean-pooled hidden state of the input's tokens (BOS as
// the model's metadata says), texts and token arrays alike, in order, with
// usage counting the tokens; base64 is the same vector's float32 bytes.
func TestEmbeddingsSDK(t *testing.T) {
	l := loadModel(t, "tiny-llama-F32.gguf")
	s := startServer(t, server.Config{}, []realModel{{File: "tiny-llama-F32.gguf", Name: "llama", Opts: engine.Options{Parallel: 2}}})
	ref := engine.New(l.Model, l.Tok, engine.Options{Context: 512})
	t.Cleanup(ref.Close)
	texts := []string{"Once upon a time", "The cat sat on the mat.", "a"}
	want := make([][]float32, len(texts))
	total := 0
	for i, text := range texts {
		ids := l.Tok.Encode(text, true, true)
		total += len(ids)
		res, err := ref.Generate(context.Background(), engine.Request{Prompt: ids, Pooling: engine.PoolMean}, nil)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = unit(res.Embedding)
	}
	ctx := context.Background()
	resp, err := s.Client.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "llama",
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: texts}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Model != "llama" || len(resp.Data) != len(texts) || resp.Usage.PromptTokens != int64(total) || resp.Usage.TotalTokens != int64(total) {
		t.Fatalf("model %q, %d embeddings, usage %+v; want llama, %d, %d tokens", resp.Model, len(resp.Data), resp.Usage, len(texts), total)
	}
	for i, d := range resp.Data {
		if d.Index != int64(i) {
			t.Errorf("data[%d].index = %d", i, d.Index)
		}
		got := make([]float32, len(d.Embedding))
		norm := 0.0
		for k, v := range d.Embedding {
			got[k] = float32(v)
			norm += v * v
		}
		if math.Abs(norm-1) > 1e-5 {
			t.Errorf("input %d: |v|² = %v, want 1", i, norm)
		}
		closeVec(t, texts[i], got, want[i], 1e-5)
	}

	// One text and its token ids give the same vector; so does base64.
	ids := l.Tok.Encode(texts[1], true, true)
	toks := make([]int64, len(ids))
	for i, id := range ids {
		toks[i] = int64(id)
	}
	byTokens, err := s.Client.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "llama",
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfTokens: toks}})
	if err != nil {
		t.Fatal(err)
	}
	closeVec(t, "token ids", f32(byTokens.Data[0].Embedding), want[1], 1e-5)

	var b64 struct {
		Data []struct {
			Embedding string `json:"embedding"`
		} `json:"data"`
	}
	status, body := postJSON(t, s.URL+"/v1/embeddings", `{"model":"llama","input":"The cat sat on the mat.","encoding_format":"base64"}`)
	if status != 200 {
		t.Fatalf("base64: %d %s", status, body)
	}
	if err := json.Unmarshal(body, &b64); err != nil || len(b64.Data) != 1 {
		t.Fatalf("base64 body %s: %v", body, err)
	}
	raw, err := base64.StdEncoding.DecodeString(b64.Data[0].Embedding)
	if err != nil || len(raw) != 4*len(want[1]) {
		t.Fatalf("base64 embedding: %d bytes, %v", len(raw), err)
	}
	dec := make([]float32, len(raw)/4)
	for i := range dec {
		dec[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	closeVec(t, "base64", dec, want[1], 1e-5)
}

// TestEmbeddingsErrors: malformed embeddings requests are 400s (404 for an
// unknown model) naming the parameter.
func TestEmbeddingsErrors(t *testing.T) {
	s := startServer(t, server.Config{}, []realModel{{File: "stories260K.gguf", Name: "stories", Opts: engine.Options{Context: 64}}})
	long := strings.Repeat("Once upon a time there was a little girl. ", 20)
	for _, tc := range []struct {
		name, body string
		status     int
		param      string
		msg        string
	}{
		{"no input", `{"model":"stories"}`, 400, "input", "Missing required parameter"},
		{"empty array", `{"model":"stories","input":[]}`, 400, "input", "empty array"},
		{"empty string", `{"model":"stories","input":["a",""]}`, 400, "input", "input 1 is an empty string"},
		{"empty token array", `{"model":"stories","input":[[1],[]]}`, 400, "input", "input 1 is an empty token array"},
		{"token outside the vocabulary", `{"model":"stories","input":[1,2,99999]}`, 400, "input", "outside the vocabulary"},
		{"negative token", `{"model":"stories","input":[1,-2]}`, 400, "input", "negative"},
		{"input of the wrong type", `{"model":"stories","input":{"text":"a"}}`, 400, "input", ""},
		{"encoding format", `{"model":"stories","input":"a","encoding_format":"int8"}`, 400, "encoding_format", "int8"},
		{"dimensions", `{"model":"stories","input":"a","dimensions":3}`, 400, "dimensions", "not trained to be truncated"},
		{"too long", `{"model":"stories","input":["a",` + jsonString(long) + `]}`, 400, "input", "Input 1"},
		{"unknown field", `{"model":"stories","input":"a","pooling":"mean"}`, 400, "pooling", ""},
		{"unknown model", `{"model":"nope","input":"a"}`, 404, "model", "nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := postJSON(t, s.URL+"/v1/embeddings", tc.body)
			var e struct {
				Error struct {
					Message string  `json:"message"`
					Param   *string `json:"param"`
				} `json:"error"`
			}
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("%d %s: %v", status, body, err)
			}
			if status != tc.status || e.Error.Param == nil || *e.Error.Param != tc.param || !strings.Contains(e.Error.Message, tc.msg) {
				t.Fatalf("%d %s; want %d, param %q, message with %q", status, body, tc.status, tc.param, tc.msg)
			}
		})
	}
}

// TestTokenizeEndpoints: /tokenize in llama-server's shape (no special
// tokens unless asked, pieces on request) and vLLM's (special tokens by
// default, messages through the chat template, counted as a chat request
// of the same messages is billed), /detokenize back to the text.
func TestTokenizeEndpoints(t *testing.T) {
	// The trained flash model: a Qwen3 vocabulary with its control tokens.
	l := loadModel(t, "trained/flash-F32.gguf")
	s := startServer(t, server.Config{}, []realModel{{File: "trained/flash-F32.gguf", Name: "qwen"}})
	text := "Hello world<|im_end|>"
	plain := l.Tok.Encode(text, false, true)
	special := l.Tok.Encode(text, true, true)
	var tr struct {
		Tokens      []json.RawMessage `json:"tokens"`
		Count       int               `json:"count"`
		MaxModelLen int               `json:"max_model_len"`
	}
	decode := func(body []byte) []int32 {
		t.Helper()
		tr.Tokens = nil
		if err := json.Unmarshal(body, &tr); err != nil {
			t.Fatal(err)
		}
		var ids []int32
		for _, r := range tr.Tokens {
			var id int32
			if json.Unmarshal(r, &id) != nil {
				var p struct {
					ID int32 `json:"id"`
				}
				json.Unmarshal(r, &p)
				id = p.ID
			}
			ids = append(ids, id)
		}
		return ids
	}
	for _, tc := range []struct {
		name, body string
		want       []int32
	}{
		{"llama-server content", `{"content":` + jsonString(text) + `}`, plain},
		{"llama-server add_special", `{"content":` + jsonString(text) + `,"add_special":true}`, special},
		{"vLLM prompt", `{"model":"qwen","prompt":` + jsonString(text) + `}`, special},
		{"vLLM add_special_tokens false", `{"model":"qwen","prompt":` + jsonString(text) + `,"add_special_tokens":false}`, plain},
		{"parse_special false", `{"content":` + jsonString(text) + `,"parse_special":false}`, l.Tok.Encode(text, false, false)},
	} {
		status, body := postJSON(t, s.URL+"/tokenize", tc.body)
		if status != 200 {
			t.Fatalf("%s: %d %s", tc.name, status, body)
		}
		if got := decode(body); !equalIDs(got, tc.want) || tr.Count != len(tc.want) || tr.MaxModelLen != 512 {
			t.Errorf("%s: %v (count %d, max_model_len %d), want %v", tc.name, got, tr.Count, tr.MaxModelLen, tc.want)
		}
	}
	if equalIDs(l.Tok.Encode(text, false, false), plain) {
		t.Fatal("the test text tokenizes the same with and without special-token parsing")
	}

	// Pieces: the token texts join to the input.
	status, body := postJSON(t, s.URL+"/tokenize", `{"content":"Hello world","with_pieces":true}`)
	var pieces struct {
		Tokens []struct {
			ID    int32  `json:"id"`
			Piece string `json:"piece"`
		} `json:"tokens"`
	}
	if err := json.Unmarshal(body, &pieces); status != 200 || err != nil {
		t.Fatalf("with_pieces: %d %s %v", status, body, err)
	}
	joined := ""
	for _, p := range pieces.Tokens {
		joined += p.Piece
	}
	if joined != "Hello world" {
		t.Errorf("pieces join to %q", joined)
	}

	// Detokenize inverts tokenize.
	ids, _ := json.Marshal(plain)
	status, body = postJSON(t, s.URL+"/detokenize", `{"tokens":`+string(ids)+`}`)
	var dt struct{ Content, Prompt string }
	if err := json.Unmarshal(body, &dt); status != 200 || err != nil || dt.Content != text || dt.Prompt != text {
		t.Fatalf("detokenize: %d %s", status, body)
	}

	// Messages count as the chat request of the same messages is billed.
	msgs := `[{"role":"system","content":"Be brief."},{"role":"user","content":"What is 2 + 2?"}]`
	status, body = postJSON(t, s.URL+"/tokenize", `{"model":"qwen","messages":`+msgs+`}`)
	if status != 200 {
		t.Fatalf("messages: %d %s", status, body)
	}
	counted := len(decode(body))
	comp, err := s.Client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "qwen", MaxTokens: openai.Int(1),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Be brief."), openai.UserMessage("What is 2 + 2?")}})
	if err != nil {
		t.Fatal(err)
	}
	if int64(counted) != comp.Usage.PromptTokens {
		t.Errorf("/tokenize counted %d tokens; the chat completion used %d", counted, comp.Usage.PromptTokens)
	}

	for _, tc := range []struct{ path, body, param string }{
		{"/tokenize", `{}`, "content"},
		{"/tokenize", `{"content":"a","prompt":"b"}`, "content"},
		{"/tokenize", `{"model":"nope","content":"a"}`, "model"},
		{"/detokenize", `{}`, "tokens"},
		{"/detokenize", `{"tokens":[1,999999]}`, "tokens"},
	} {
		status, body := postJSON(t, s.URL+tc.path, tc.body)
		if status/100 != 4 || !strings.Contains(string(body), `"param":"`+tc.param+`"`) {
			t.Errorf("%s %s: %d %s; want a 4xx naming %q", tc.path, tc.body, status, body, tc.param)
		}
	}
}

// TestCountTokensSDK: the Anthropic SDK's Messages.CountTokens gives the
// input tokens that Messages.New of the same conversation then reports.
func TestCountTokensSDK(t *testing.T) {
	s := startServer(t, server.Config{}, []realModel{{File: "tiny-qwen3-F32.gguf", Name: "qwen"}})
	c := anthropicClient(s.URL)
	ctx := context.Background()
	msgs := []anthropic.MessageParam{
		anthropic.NewUserMessage(anthropic.NewTextBlock("What is the weather in Paris?")),
	}
	sys := []anthropic.TextBlockParam{{Text: "You answer with tools."}}
	tools := []anthropic.ToolUnionParam{weatherParam}
	n, err := c.Messages.CountTokens(ctx, anthropic.MessageCountTokensParams{Model: "qwen", Messages: msgs,
		System: anthropic.MessageCountTokensParamsSystemUnion{OfTextBlockArray: sys}, Tools: toCountTools(tools)})
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Messages.New(ctx, anthropic.MessageNewParams{Model: "qwen", MaxTokens: 1, Messages: msgs, System: sys, Tools: tools})
	if err != nil {
		t.Fatal(err)
	}
	if n.InputTokens != m.Usage.InputTokens || n.InputTokens < 20 {
		t.Fatalf("count_tokens said %d; the message used %d input tokens", n.InputTokens, m.Usage.InputTokens)
	}
	noTools, err := c.Messages.CountTokens(ctx, anthropic.MessageCountTokensParams{Model: "qwen", Messages: msgs})
	if err != nil {
		t.Fatal(err)
	}
	if noTools.InputTokens >= n.InputTokens {
		t.Errorf("without the system prompt and tools: %d tokens, with them %d", noTools.InputTokens, n.InputTokens)
	}

	// Errors in Anthropic's shape.
	status, body := postJSON(t, s.URL+"/v1/messages/count_tokens", `{"model":"qwen"}`)
	var e struct {
		Type  string `json:"type"`
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || status != 400 || e.Type != "error" || e.Error.Type != "invalid_request_error" || !strings.Contains(e.Error.Message, "messages") {
		t.Fatalf("no messages: %d %s", status, body)
	}
}

func toCountTools(in []anthropic.ToolUnionParam) []anthropic.MessageCountTokensToolUnionParam {
	out := make([]anthropic.MessageCountTokensToolUnionParam, len(in))
	for i, t := range in {
		out[i] = anthropic.MessageCountTokensToolUnionParam{OfTool: t.OfTool}
	}
	return out
}

func postJSON(t *testing.T, url, body string) (int, []byte) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func equalIDs(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func unit(v []float32) []float32 {
	s := 0.0
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(float64(x) / math.Sqrt(s))
	}
	return out
}

func f32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

func closeVec(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(float64(got[i]) - float64(want[i])); d > tol {
			t.Fatalf("%s: value %d is %v, want %v", what, i, got[i], want[i])
		}
	}
}
