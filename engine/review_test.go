package engine

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestJSONAfterThinkingBudget: when a spent budget closes the thinking block,
// the forced hand-over's newlines are not part of the JSON answer, which must
// still start and parse as an object.
func TestJSONAfterThinkingBudget(t *testing.T) {
	m, tok := openModel(t, thinkingModel(t), 1)
	e := New(m, tok, Options{Context: 512})
	defer e.Close()
	res, err := e.Generate(context.Background(), Request{
		Prompt: tok.Encode("Once upon a time<think>", false, true), MaxTokens: 200,
		Thinking: thinkingFor(tok, 3), JSONObject: true,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var answer strings.Builder
	for _, tk := range res.Tokens {
		if !tk.Reasoning && !tk.Forced {
			answer.WriteString(tk.Text)
		}
	}
	a := answer.String()
	if !strings.HasPrefix(a, "{") {
		t.Fatalf("answer after the thinking block does not start a JSON object: %q (finish %s, %d tokens, last %+v)", a, res.FinishReason, len(res.Tokens), res.Tokens[len(res.Tokens)-1])
	}
	if res.FinishReason == "stop" {
		var obj map[string]any
		if err := json.Unmarshal([]byte(a), &obj); err != nil {
			t.Fatalf("finished answer is not a JSON object: %v: %q", err, a)
		}
	}
}

// TestCancelWhileQueued: a request cancelled while it waits for a slot
// returns at once, not when the running request ends.
func TestCancelWhileQueued(t *testing.T) {
	m, tok := openStories(t)
	e := New(m, tok, Options{Context: 2048, Parallel: 1})
	defer e.Close()
	prompt := tok.Encode("Once upon a time", true, true)
	long, stopLong := context.WithCancel(context.Background())
	defer stopLong()
	started := make(chan struct{})
	go e.Generate(long, Request{Prompt: prompt, MaxTokens: 2000, IgnoreEOS: true}, func(Token) bool {
		select {
		case <-started:
		default:
			close(started)
		}
		return true
	})
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan *Result)
	go func() {
		res, _ := e.Generate(ctx, Request{Prompt: prompt, MaxTokens: 5}, nil)
		done <- res
	}()
	for e.QueueDepth() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case res := <-done:
		if res == nil || res.FinishReason != "cancelled" || len(res.Tokens) != 0 {
			t.Fatalf("queued request after cancel: %+v", res)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a request cancelled in the queue waited for the running one")
	}
	if d := e.QueueDepth(); d != 0 {
		t.Fatalf("queue depth %d after cancel", d)
	}
}
