package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// The chat mode (Config.Conversations > 0) measures prefix-cache reuse:
// every turn of a conversation resends the whole history, so its prompt
// starts with the previous turn's prompt and reply, and a server (or a
// gateway's replica) that kept that turn's KV cache reuses it.

// systemPrompt opens every conversation.
const systemPrompt = "You are a storyteller. Continue the user's story in plain prose, one paragraph at a time."

// chatMessage is one message of a conversation.
type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// firstMessages are the messages of conversation i's first turn in a run.
func firstMessages(c Config, run string, i int) []chatMessage {
	return []chatMessage{{"system", systemPrompt}, {"user", fmt.Sprintf("%s (conversation %d, run %s)", c.Prompt, i, run)}}
}

// nextUser is the user message of turn k ≥ 2.
func nextUser(k int) chatMessage {
	return chatMessage{"user", fmt.Sprintf("Go on. (turn %d)", k)}
}

// chatBody is the request of one turn.
func chatBody(c Config, model string, messages []chatMessage) []byte {
	body := map[string]any{"model": model, "messages": messages, "max_tokens": c.MaxTokens, "temperature": 0,
		"stream": true, "stream_options": map[string]any{"include_usage": true}}
	if c.IgnoreEOS {
		body["ignore_eos"] = true
	}
	b, _ := json.Marshal(body)
	return b
}

// How a conversation ended.
const (
	convOK     = iota // every turn succeeded
	convFailed        // a turn failed; the later turns were not sent
	convCut           // the round's time limit (or the context) ended it before its last turn
)

// conversation is what one conversation of a round did.
type conversation struct {
	samples []sample // the turns sent, in order
	end     int      // convOK, convFailed or convCut
}

// runConversation sends conversation i's turns one after another until
// one fails, or the deadline (if not zero) passes before a turn starts.
func runConversation(ctx context.Context, hc *http.Client, c Config, run, base, model string, i int, deadline time.Time) conversation {
	var conv conversation
	msgs := firstMessages(c, run, i)
	for k := 1; k <= c.Turns; k++ {
		if ctx.Err() != nil || (!deadline.IsZero() && !time.Now().Before(deadline)) {
			conv.end = convCut
			return conv
		}
		rctx, cancel := context.WithTimeout(ctx, c.Timeout)
		s, reply := streamChat(rctx, hc, base, c.APIKey, chatBody(c, model, msgs))
		cancel()
		s.turn = k
		conv.samples = append(conv.samples, s)
		if s.err != "" {
			conv.end = convFailed
			return conv
		}
		msgs = append(msgs, chatMessage{"assistant", reply}, nextUser(k+1))
	}
	conv.end = convOK
	return conv
}

// chatRound runs conversations 1..c.Conversations of a run against one server, each
// client taking the next one when its last has ended, and returns them (in
// no particular order) and the wall time until the last one ended. With a
// Duration, no turn starts after it has passed.
func chatRound(ctx context.Context, hc *http.Client, c Config, run, base, model string) ([]conversation, time.Duration) {
	start := time.Now()
	var deadline time.Time
	if c.Duration > 0 {
		deadline = start.Add(c.Duration)
	}
	var next atomic.Int64
	var mu sync.Mutex
	var convs []conversation
	var wg sync.WaitGroup
	for range c.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1))
				if i > c.Conversations {
					return
				}
				conv := runConversation(ctx, hc, c, run, base, model, i, deadline)
				mu.Lock()
				convs = append(convs, conv)
				mu.Unlock()
				if conv.end == convFailed { // do not hammer a failing server
					pause := failurePause
					if !deadline.IsZero() {
						pause = min(pause, time.Until(deadline))
					}
					time.Sleep(pause)
				}
			}
		}()
	}
	wg.Wait()
	return convs, time.Since(start)
}

// warmupMessage is the chat mode's warm-up request.
const warmupMessage = "Say hello."
