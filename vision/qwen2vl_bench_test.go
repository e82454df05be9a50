package vision

import (
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/stepflash/stepflash/internal/synthmodels"
)

// BenchmarkEncodeQwen25VLFull times one 448x448 image (1,024 patches, 256
// embeddings) through a projector of Qwen2.5-VL 3B's vision shape
// (synthmodels.Qwen25VLFull: 32 blocks of width 1280, 28 of them windowed,
// F16 weights), 2 threads. $STEPFLASH_QWEN25VL_FULL names a directory to
// keep the files in, with the image as bench-448.png (for llama.cpp's side
// of BENCHMARKS.md), else they are written to a temporary one.
func BenchmarkEncodeQwen25VLFull(b *testing.B) {
	dir := os.Getenv("STEPFLASH_QWEN25VL_FULL")
	if dir == "" {
		dir = b.TempDir()
	}
	_, proj, err := synthmodels.Qwen25VLFull(dir)
	if err != nil {
		b.Fatal(err)
	}
	e, err := Open(proj, Options{Threads: 2})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	img := image.NewNRGBA(image.Rect(0, 0, 448, 448))
	for y := 0; y < 448; y++ {
		for x := 0; x < 448; x++ {
			img.Set(x, y, color.NRGBA{uint8(x), uint8(y), uint8(x ^ y), 255})
		}
	}
	if f, err := os.Create(filepath.Join(dir, "bench-448.png")); err == nil {
		png.Encode(f, img)
		f.Close()
	}
	for b.Loop() {
		segs, err := e.Embed(img)
		if err != nil {
			b.Fatal(err)
		}
		if Positions(segs) != 256 {
			b.Fatalf("%d positions, want 256", Positions(segs))
		}
	}
}
