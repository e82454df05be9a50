package eval

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

// The advisor suite's agent loop. Each step is a problem the agent must
// solve and hand to a scripted "submit" tool that eval simulates: the tool
// accepts a right answer and fails ("error: ... exit code 1") on a wrong
// one; on the steps in flakySteps it also fails twice, whatever the answer,
// as a flaky checker would ("exit code 124"). A failed step is retried with
// the failed call and its result in the conversation, up to maxAttempts
// times; then the loop moves on. Two failing tool results in a row end the
// conversation on the third attempt, which is what Advisor Mode's
// repeated_errors signal looks for (docs/advisor.md).
//
// A model that calls the submit tool gives its answer in the call's
// "answer" argument; one that does not (the tiny trained models cannot
// write tool calls) answers in its content, and eval writes the call for
// it, so the conversation is the same either way.
const maxAttempts = 3

// flaky reports whether the checker fails on this step and attempt
// regardless of the answer: steps 4, 9, 14, ... on their first two attempts.
func flaky(step, attempt int) bool { return step%5 == 4 && attempt <= 2 }

func advisorArms(cfg *Config) (arms, labels []string) {
	base := cfg.BaselineModel
	if base == "" && len(cfg.Endpoints) > 0 {
		base = cfg.Endpoints[0].Model
	}
	return []string{ArmAuto, ArmOff, ArmBaseline}, []string{"advisor auto", "advisor off", base + " alone, effort " + cfg.BaselineEffort}
}

// loopTasks are the loop's problems: the embedded addition set's first.
func loopTasks(steps int) []Task {
	ts := AdditionTasks(max(steps, 200), DefaultSeed)[:steps]
	for i := range ts {
		ts[i].ID = "loop"
	}
	return ts
}

var submitTool = map[string]any{"type": "function", "function": map[string]any{
	"name": "submit", "description": "Submit the answer to the current problem; the result says whether it was accepted.",
	"parameters": map[string]any{"type": "object", "properties": map[string]any{"answer": map[string]any{"type": "string"}}, "required": []string{"answer"}}}}

// advisorSuite runs the loop once per arm and pass; the loops run
// concurrently, the steps of one loop in order.
func (r *runner) advisorSuite(ctx context.Context) error {
	arms, _ := advisorArms(&r.cfg)
	var jobs []func(context.Context) error
	for pass := 1; pass <= r.cfg.Passes; pass++ {
		for _, arm := range arms {
			jobs = append(jobs, func(ctx context.Context) error { return r.loop(ctx, arm, pass) })
		}
	}
	return r.runJobs(ctx, "loops", jobs)
}

// loop runs one agent loop. Its calls are recorded one by one, so that a
// stopped loop resumes at the call where it stopped (the conversation is
// rebuilt from the recorded answers).
func (r *runner) loop(ctx context.Context, arm string, pass int) error {
	spec := callSpec{arm: arm, pass: pass, client: r.clients[0], tools: []map[string]any{submitTool}}
	switch arm {
	case ArmAuto, ArmOff:
		spec.advisor, spec.effort = arm, r.cfg.Effort
	case ArmBaseline:
		spec.advisor, spec.effort, spec.model = "off", r.cfg.BaselineEffort, r.cfg.BaselineModel
	}
	for step, t := range loopTasks(r.cfg.Steps) {
		step++
		msgs := []map[string]any{{"role": "system", "content": "Solve the problem and submit the answer with the submit tool."},
			{"role": "user", "content": t.Question}}
		for attempt := 1; attempt <= maxAttempts; attempt++ {
			s := spec
			s.step, s.attempt, s.messages = step, attempt, append([]map[string]any(nil), msgs...)
			s.task = Task{ID: "loop", Answer: t.Answer}
			s.key = callKey(SuiteAdvisor, arm, pass, "loop", step, attempt)
			c, err := r.doLoopCall(ctx, s, t)
			if err != nil {
				return err
			}
			if c.Error != "" {
				r.note("%s step %d: %s", arm, step, c.Error)
			}
			result := toolResult(step, attempt, c.Answer, t.Answer)
			if !strings.HasPrefix(result, "error") {
				break
			}
			id := fmt.Sprintf("call_%d_%d", step, attempt)
			args, _ := json.Marshal(map[string]string{"answer": c.Answer})
			msgs = append(msgs,
				map[string]any{"role": "assistant", "content": "", "tool_calls": []map[string]any{{"id": id, "type": "function",
					"function": map[string]any{"name": "submit", "arguments": string(args)}}}},
				map[string]any{"role": "tool", "tool_call_id": id, "content": result})
		}
	}
	return nil
}

// doLoopCall makes one step's call; Correct says whether the checker
// accepted the answer (a right answer on a flaky attempt is not accepted).
func (r *runner) doLoopCall(ctx context.Context, s callSpec, t Task) (Call, error) {
	if c, ok := r.lookup(s.key); ok {
		r.mu.Lock()
		r.skipped++
		r.mu.Unlock()
		return c, nil
	}
	s.task.Answer = "" // scored below, from the tool's point of view
	c, err := r.makeCall(ctx, s, func(c *Call, res chatResult) {
		for _, tc := range res.ToolCalls {
			var a struct {
				Answer any `json:"answer"`
			}
			if tc.Function.Name == "submit" && json.Unmarshal([]byte(tc.Function.Arguments), &a) == nil && a.Answer != nil {
				c.Answer = strings.TrimSpace(fmt.Sprint(a.Answer))
			}
		}
		c.Expected = t.Answer
		c.Correct = res.Err == nil && !strings.HasPrefix(toolResult(s.step, s.attempt, c.Answer, t.Answer), "error")
	})
	return c, err
}

// toolResult is the scripted submit tool's answer.
func toolResult(step, attempt int, answer, want string) string {
	switch {
	case flaky(step, attempt):
		return "error: the checker timed out after 30s\nexit code 124"
	case strings.TrimSpace(answer) == want:
		return fmt.Sprintf("ok: %s accepted", want)
	case answer == "":
		return "error: no answer given\nexit code 1"
	}
	return fmt.Sprintf("error: %s is not the right answer\nexit code 1", answer)
}

// loopScores is the share of loop steps solved in one pass (a step is
// solved when one of its attempts was accepted), and the steps.
func loopScores(cs []Call, pass int) (right, n int) {
	steps := map[int]bool{}
	for _, c := range cs {
		if c.Pass != pass {
			continue
		}
		steps[c.Step] = steps[c.Step] || c.Correct
	}
	for _, ok := range steps {
		if ok {
			right++
		}
	}
	return right, len(steps)
}
