package eval

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"slices"
	"strings"
)

// The vision suite asks layout-sensitive questions about generated images
// with known answers, two ways: natively (the image as an image_url part
// holding a data: URL) and tool-chained (a captioning call describes the
// image, and its text is handed to the model with the question, as text).
//
// Task kinds:
//   - quadrant: a 64x64 image of four flat quadrants, asked "What colour is
//     the top left quadrant?", made exactly as the trained VLM's test set
//     (../shared/models/trained/vision/README.md): each quadrant one of six
//     colours, each channel jittered uniformly within ±20;
//   - grid: a 3x3 grid of flat cells, asked the colour of one cell by row
//     and column;
//   - count: squares of four colours on a light background, asked how many
//     of one colour there are.

// The vision task kinds, in the order they are reported.
const (
	KindQuadrant = "quadrant"
	KindGrid     = "grid"
	KindCount    = "count"
)

// VisionKinds are the kinds the embedded vision set has.
var VisionKinds = []string{KindQuadrant, KindGrid, KindCount}

// visionPerKind is how many tasks of each kind the embedded set has.
var visionPerKind = map[string]int{KindQuadrant: 100, KindGrid: 50, KindCount: 50}

// colourNames and colourBases are the trained VLM's six colours.
var colourNames = []string{"red", "green", "blue", "yellow", "white", "black"}

var colourBases = [][3]int{{220, 40, 40}, {40, 180, 60}, {40, 70, 220}, {240, 210, 50}, {235, 235, 235}, {20, 20, 20}}

// jittered is colour c with each channel moved uniformly within ±20.
func jittered(r *rand.Rand, c int) color.RGBA {
	var v [3]uint8
	for i, b := range colourBases[c] {
		v[i] = uint8(min(255, max(0, b+r.IntN(41)-20)))
	}
	return color.RGBA{v[0], v[1], v[2], 255}
}

// fill paints the rectangle [x0,x1)x[y0,y1) of img.
func fill(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	for y := y0; y < y1; y++ {
		for x := x0; x < x1; x++ {
			img.SetRGBA(x, y, c)
		}
	}
}

// dataURL encodes img as a PNG data: URL.
func dataURL(img image.Image) string {
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		panic(err) // an in-memory RGBA image always encodes
	}
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(b.Bytes())
}

var quadrantNames = []string{"top left", "top right", "bottom left", "bottom right"}

// quadrantTask is a trained-VLM-style quadrant image and question.
func quadrantTask(r *rand.Rand, i int) Task {
	img := image.NewRGBA(image.Rect(0, 0, 64, 64))
	var cols [4]int
	for q := range cols {
		cols[q] = r.IntN(len(colourNames))
		x, y := 32*(q%2), 32*(q/2)
		fill(img, x, y, x+32, y+32, jittered(r, cols[q]))
	}
	q := r.IntN(4)
	return Task{ID: fmt.Sprintf("%s-%03d", KindQuadrant, i), Question: "What colour is the " + quadrantNames[q] + " quadrant?",
		Answer: colourNames[cols[q]], Check: CheckChoice, Options: colourNames, Image: dataURL(img)}
}

// gridTask is a 3x3 grid of 64-pixel cells and a question on one cell.
func gridTask(r *rand.Rand, i int) Task {
	img := image.NewRGBA(image.Rect(0, 0, 192, 192))
	var cols [9]int
	for c := range cols {
		cols[c] = r.IntN(len(colourNames))
		x, y := 64*(c%3), 64*(c/3)
		fill(img, x, y, x+64, y+64, jittered(r, cols[c]))
	}
	c := r.IntN(9)
	return Task{ID: fmt.Sprintf("%s-%03d", KindGrid, i),
		Question: fmt.Sprintf("The image is a 3x3 grid of coloured cells. What colour is the cell in row %d, column %d (rows counted from the top, columns from the left)? Answer with one word.", c/3+1, c%3+1),
		Answer:   colourNames[cols[c]], Check: CheckChoice, Options: colourNames, Image: dataURL(img)}
}

// countTask places 1–6 squares of one colour and 0–4 of others on a 4x4
// layout of slots over a light background, and asks for the first count.
func countTask(r *rand.Rand, i int) Task {
	img := image.NewRGBA(image.Rect(0, 0, 192, 192))
	fill(img, 0, 0, 192, 192, color.RGBA{250, 250, 250, 255})
	target := r.IntN(4) // red, green, blue or yellow
	n, others := 1+r.IntN(6), r.IntN(5)
	slots := r.Perm(16)[:n+others]
	for k, s := range slots {
		c := target
		if k >= n {
			c = (target + 1 + r.IntN(3)) % 4
		}
		x, y := 48*(s%4)+8, 48*(s/4)+8
		fill(img, x, y, x+32, y+32, jittered(r, c))
	}
	return Task{ID: fmt.Sprintf("%s-%03d", KindCount, i),
		Question: fmt.Sprintf("How many %s squares are in the image? Answer with a number.", colourNames[target]),
		Answer:   fmt.Sprint(n), Check: CheckNumeric, Image: dataURL(img)}
}

// VisionTasks makes the embedded vision set: perKind tasks of each kind
// (0: the default 100 quadrant, 50 grid, 50 count), kinds in the order
// given. The same seed gives the same tasks.
func VisionTasks(kinds []string, perKind int, seed uint64) ([]Task, error) {
	var ts []Task
	for _, k := range kinds {
		gen := map[string]func(*rand.Rand, int) Task{KindQuadrant: quadrantTask, KindGrid: gridTask, KindCount: countTask}[k]
		if gen == nil {
			return nil, fmt.Errorf("unknown vision task kind %q: want %s", k, strings.Join(VisionKinds, ", "))
		}
		n := visionPerKind[k]
		if perKind > 0 {
			n = min(n, perKind)
		}
		// Each kind has its own stream, so that --limit and --kinds do not
		// change the tasks of another kind.
		r := rand.New(rand.NewPCG(seed, uint64(slices.Index(VisionKinds, k))+0x7150))
		for i := range n {
			ts = append(ts, gen(r, i+1))
		}
	}
	return ts, nil
}

// kindOf is a task's kind: its id up to the last "-".
func kindOf(id string) string {
	if i := strings.LastIndexByte(id, '-'); i > 0 {
		return id[:i]
	}
	return id
}

// DefaultCaptionPrompt is what the captioning call of the tool-chained
// arm asks about the image.
const DefaultCaptionPrompt = "Describe this image for someone who cannot see it: its layout, and the colour and position of every region or object in it."

// chainedQuestion is the text the tool-chained arm hands the model.
func chainedQuestion(caption, question string) string {
	return "Here is a description of an image:\n" + caption + "\n\n" + question
}

// imageMessage is a user message with the image first, then the text (the
// order the trained VLM was trained on).
func imageMessage(url, text string) []map[string]any {
	return []map[string]any{{"role": "user", "content": []map[string]any{
		{"type": "image_url", "image_url": map[string]any{"url": url}},
		{"type": "text", "text": text},
	}}}
}

// takesImages says whether the endpoint lists model as taking images:
// known is false when its /models entry has no input_modalities.
func (c *client) takesImages(model string) (yes, known bool) {
	for _, m := range c.models {
		if m.ID == model && len(m.InputModalities) > 0 {
			return slices.Contains(m.InputModalities, "image"), true
		}
	}
	return false, false
}

// visionArms decides which arms can run on the endpoint: native needs a
// model that takes images, the chained arm a captioner that does. It sets
// cfg.Arms and notes what is left out and why.
func (r *runner) visionArms() error {
	c := r.clients[0]
	model := c.ep.Model
	if r.cfg.CaptionModel == "" {
		r.cfg.CaptionModel = model
	}
	capModel := r.cfg.CaptionModel
	if names := c.modelNames(); len(names) > 0 && !slices.Contains(names, capModel) {
		return fmt.Errorf("caption model %q is not served by %s; it serves: %s", capModel, c.base, strings.Join(names, ", "))
	}
	native, nKnown := c.takesImages(model)
	capt, cKnown := c.takesImages(capModel)
	if nKnown && !native && cKnown && !capt {
		var vis []string
		for _, m := range c.models {
			if ok, _ := c.takesImages(m.ID); ok {
				vis = append(vis, m.ID)
			}
		}
		what := "it serves no model that does"
		if len(vis) > 0 {
			what = "models there that take images: " + strings.Join(vis, ", ") + " (pass one as --caption-model to run the tool-chained arm)"
		}
		if capModel == model {
			return fmt.Errorf("model %q at %s takes no image input (its /models input_modalities: text only), so neither arm of the vision suite can run: the native arm needs image input and the tool-chained arm a captioner with it; %s", model, c.base, what)
		}
		return fmt.Errorf("neither %q nor the caption model %q at %s takes image input (their /models input_modalities: text only), so no arm of the vision suite can run; %s", model, capModel, c.base, what)
	}
	r.cfg.Arms = nil
	if !nKnown || native {
		r.cfg.Arms = append(r.cfg.Arms, ArmNative)
	} else {
		r.note("%s takes no image input (its /models input_modalities: text only): the native arm is not run, only the tool-chained one (captions by %s)", model, capModel)
	}
	if !cKnown || capt {
		r.cfg.Arms = append(r.cfg.Arms, ArmChained)
	} else {
		r.note("the caption model %s takes no image input (its /models input_modalities: text only): the tool-chained arm is not run; pass --caption-model naming one that does", capModel)
	}
	for _, m := range slices.Compact([]string{model, capModel}) {
		if _, known := c.takesImages(m); !known {
			r.note("%s does not list input_modalities for %s: whether it takes images shows only in the answers (a refusal is recorded as an error)", c.base, m)
		}
	}
	return nil
}

// vision asks every task on every pass, natively and tool-chained.
func (r *runner) vision(ctx context.Context) error {
	var jobs []func(context.Context) error
	for pass := 1; pass <= r.cfg.Passes; pass++ {
		for _, t := range r.cfg.Tasks {
			for _, arm := range r.cfg.Arms {
				jobs = append(jobs, func(ctx context.Context) error {
					var c Call
					var err error
					if arm == ArmNative {
						c, err = r.do(ctx, callSpec{arm: arm, pass: pass, task: t, client: r.clients[0], effort: r.cfg.Effort,
							messages: imageMessage(t.Image, t.Question), images: 1})
					} else {
						c, err = r.chained(ctx, pass, t)
					}
					if err == nil && c.Error != "" {
						r.note("%s arm: %s", arm, c.Error)
					}
					return err
				})
			}
		}
	}
	return r.runJobs(ctx, "tasks", jobs)
}

// chained makes the tool-chained arm's two calls: step 1 captions the
// image (the caption model, the image and the caption prompt; not scored),
// step 2 asks the model the question with the caption as text.
func (r *runner) chained(ctx context.Context, pass int, t Task) (Call, error) {
	capTask := t
	capTask.Answer = "" // the caption is not scored
	capSpec := callSpec{arm: ArmChained, pass: pass, step: 1, task: capTask, client: r.clients[0], model: r.cfg.CaptionModel,
		effort: r.cfg.Effort, messages: imageMessage(t.Image, r.cfg.CaptionPrompt), images: 1}
	capCall, err := r.do(ctx, capSpec)
	if err != nil {
		return capCall, err
	}
	if capCall.Error != "" {
		// No caption: the answer call is recorded as failed with the
		// caption's error, without asking the model.
		key := callKey(SuiteVision, ArmChained, pass, t.ID, 2, 0)
		if c, ok := r.lookup(key); ok {
			return c, nil
		}
		c := Call{Key: key, Suite: SuiteVision, Arm: ArmChained, Pass: pass, Task: t.ID, Step: 2, Endpoint: capCall.Endpoint,
			Model: r.clients[0].ep.Model, Expected: t.Answer, Status: capCall.Status, Error: "no caption: " + capCall.Error, Time: capCall.Time}
		return c, r.record(c)
	}
	return r.do(ctx, callSpec{arm: ArmChained, pass: pass, step: 2, task: t, client: r.clients[0], effort: r.cfg.Effort,
		messages: userMessage(chainedQuestion(capCall.Answer, t.Question))})
}
