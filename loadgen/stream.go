package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"strings"
	"time"

	"github.com/stepflash/stepflash/sse"
)

// sample is one request of a load run.
type sample struct {
	err       string
	tokens    int           // completion tokens
	fromUsage bool          // tokens came from the server's usage (else: streamed chunks with text)
	ttft      time.Duration // time to the first chunk with text; 0 if none
	decodeTPS float64       // (tokens-1) / (last text chunk - first); 0 under 2 tokens
	// gaps are the times between consecutive chunks with text: the
	// inter-token latency as the client sees it (a chunk may carry more
	// than one token).
	gaps []time.Duration
	long bool // the background long-prompt client's request (Config.LongPrompt)

	// The chat mode's prompt accounting, from the server's usage.
	turn         int  // 1-based turn of the conversation; 0 in the completions mode
	promptTokens int  // usage.prompt_tokens; 0 if none was sent
	cachedTokens int  // cached prompt tokens, if cachedKnown
	cachedKnown  bool // the usage gave a count of cached prompt tokens
}

// completionBody is the request every client sends.
func completionBody(c Config, model string) []byte {
	body := map[string]any{"model": model, "prompt": c.Prompt, "max_tokens": c.MaxTokens, "temperature": 0,
		"stream": true, "stream_options": map[string]any{"include_usage": true}}
	if c.IgnoreEOS {
		body["ignore_eos"] = true
	}
	b, _ := json.Marshal(body)
	return b
}

// longPromptBody is the background client's request: a prompt of n token
// ids drawn at random from 100..355 (every vocabulary of a served model
// has them; fresh ones for every request, so that no prefix cache serves
// one), one token to generate.
func longPromptBody(c Config, model string, rng *rand.Rand) []byte {
	ids := make([]int, c.LongPrompt)
	for i := range ids {
		ids[i] = 100 + rng.IntN(256)
	}
	body := map[string]any{"model": model, "prompt": ids, "max_tokens": 1, "temperature": 0,
		"stream": true, "stream_options": map[string]any{"include_usage": true}}
	b, _ := json.Marshal(body)
	return b
}

// streamCompletion sends one streaming completion and times its chunks.
func streamCompletion(ctx context.Context, hc *http.Client, base, apiKey string, body []byte) sample {
	s, _ := streamRequest(ctx, hc, base+"/completions", apiKey, body)
	return s
}

// streamChat sends one streaming chat completion and times its chunks; it
// also returns the streamed content of the reply (without any reasoning).
func streamChat(ctx context.Context, hc *http.Client, base, apiKey string, body []byte) (sample, string) {
	return streamRequest(ctx, hc, base+"/chat/completions", apiKey, body)
}

// usage is the usage object of a stream's last chunks. Servers report
// cached prompt tokens in OpenAI's prompt_tokens_details.cached_tokens, at
// the top level (stepflash, StepFun) or as DeepSeek's
// prompt_cache_hit_tokens; vLLM sends prompt_tokens_details null unless it
// runs with --enable-prompt-tokens-details.
type usage struct {
	PromptTokens        int  `json:"prompt_tokens"`
	CompletionTokens    int  `json:"completion_tokens"`
	CachedTokens        *int `json:"cached_tokens"`
	PromptCacheHit      *int `json:"prompt_cache_hit_tokens"`
	PromptTokensDetails *struct {
		CachedTokens *int `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
}

// cached is the count of cached prompt tokens, if the usage gives one.
func (u *usage) cached() (int, bool) {
	switch {
	case u.PromptTokensDetails != nil && u.PromptTokensDetails.CachedTokens != nil:
		return *u.PromptTokensDetails.CachedTokens, true
	case u.CachedTokens != nil:
		return *u.CachedTokens, true
	case u.PromptCacheHit != nil:
		return *u.PromptCacheHit, true
	}
	return 0, false
}

// streamRequest posts a streaming request to url and times the chunks that
// carry generated text: choices[].text of a completion, or the content or
// reasoning of choices[].delta of a chat completion. It returns the sample
// and the concatenated delta.content.
func streamRequest(ctx context.Context, hc *http.Client, url, apiKey string, body []byte) (s sample, content string) {
	start := time.Now()
	var resp *http.Response
	for attempt := 0; ; attempt++ {
		reused := false
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			s.err = err.Error()
			return s, ""
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "text/event-stream")
		if apiKey != "" {
			req.Header.Set("Authorization", "Bearer "+apiKey)
		}
		resp, err = hc.Do(req)
		if err == nil {
			break
		}
		// A kept-alive connection the server had just closed: once more
		// on a new one (Go retries only idempotent requests itself).
		if !reused || attempt > 0 || ctx.Err() != nil {
			s.err = err.Error()
			return s, ""
		}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		s.err = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, errorText(b))
		return s, ""
	}
	events := sse.NewReader(resp.Body, maxSSELine)
	var first, last time.Time
	var reply strings.Builder
	var u *usage
	chunks := 0
	done, finished := false, false
	for !done {
		ev, err := events.Next()
		if err != nil {
			if err == io.EOF {
				break
			}
			s.err = "reading the stream: " + err.Error()
			return s, ""
		}
		if ev.Data == sse.Done {
			done = true
			continue
		}
		var ch struct {
			Choices []struct {
				Text  string `json:"text"`
				Delta struct {
					Content          string `json:"content"`
					ReasoningContent string `json:"reasoning_content"`
					Reasoning        string `json:"reasoning"`
				} `json:"delta"`
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
			Usage *usage          `json:"usage"`
			Error json.RawMessage `json:"error"`
		}
		if jerr := json.Unmarshal([]byte(ev.Data), &ch); jerr != nil {
			s.err = fmt.Sprintf("bad stream chunk %.80q: %v", ev.Data, jerr)
			return s, ""
		}
		if len(ch.Error) > 0 && string(ch.Error) != "null" {
			s.err = "error in the stream: " + errorText([]byte(ev.Data))
			return s, ""
		}
		for _, c := range ch.Choices {
			if c.Text != "" || c.Delta.Content != "" || c.Delta.ReasoningContent != "" || c.Delta.Reasoning != "" {
				now := time.Now()
				if chunks == 0 {
					first = now
				} else {
					s.gaps = append(s.gaps, now.Sub(last))
				}
				last = now
				chunks++
			}
			reply.WriteString(c.Delta.Content)
			if c.FinishReason != nil && *c.FinishReason != "" {
				finished = true
			}
		}
		if ch.Usage != nil {
			u = ch.Usage
		}
	}
	if !done && !finished {
		s.err = "the stream ended without a finish_reason or [DONE]"
		return s, ""
	}
	s.tokens, s.fromUsage = chunks, false
	if u != nil {
		if u.CompletionTokens > 0 {
			s.tokens, s.fromUsage = u.CompletionTokens, true
		}
		s.promptTokens = u.PromptTokens
		s.cachedTokens, s.cachedKnown = u.cached()
	}
	if chunks > 0 {
		s.ttft = first.Sub(start)
		if s.tokens >= 2 && last.After(first) {
			s.decodeTPS = float64(s.tokens-1) / last.Sub(first).Seconds()
		}
	}
	return s, reply.String()
}

// errorText is the message of an OpenAI error object, or the body itself.
func errorText(b []byte) string {
	var e struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && len(e.Error) > 0 {
		var obj struct {
			Message string `json:"message"`
			Code    any    `json:"code"`
		}
		if json.Unmarshal(e.Error, &obj) == nil && obj.Message != "" {
			if obj.Code != nil {
				return fmt.Sprintf("%s (%v)", obj.Message, obj.Code)
			}
			return obj.Message
		}
		var str string
		if json.Unmarshal(e.Error, &str) == nil {
			return str
		}
	}
	t := strings.TrimSpace(string(b))
	if len(t) > 300 {
		t = t[:300] + "…"
	}
	return t
}

// firstModel returns the first id of a server's model list.
func firstModel(ctx context.Context, hc *http.Client, base, apiKey string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/models", nil)
	if err != nil {
		return "", err
	}
	if apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %d: %s", resp.StatusCode, errorText(b))
	}
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &list); err != nil || len(list.Data) == 0 || list.Data[0].ID == "" {
		return "", errors.New("the model list has no models")
	}
	return list.Data[0].ID, nil
}
