package vision

import (
	"os"
	"testing"

	"github.com/stepflash/stepflash/internal/synthmodels"
	"github.com/stepflash/stepflash/internal/testmodels"
)

// BenchmarkEncodeGemma3Full times one image through a projector of Gemma 3
// 4B's shape (synthmodels.Gemma3Full: 896-pixel picture, 4,096 patches, 27
// blocks of width 1152, F16 weights; 256 embeddings), 2 threads: the
// shared 64x64 test image, letterboxed, encoded, pooled and projected.
// $STEPFLASH_GEMMA3_FULL names a directory to keep the files in (for
// llama.cpp's side of BENCHMARKS.md), else they are written to a
// temporary one.
func BenchmarkEncodeGemma3Full(b *testing.B) {
	dir := os.Getenv("STEPFLASH_GEMMA3_FULL")
	if dir == "" {
		dir = b.TempDir()
	}
	_, proj, err := synthmodels.Gemma3Full(dir)
	if err != nil {
		b.Fatal(err)
	}
	e, err := Open(proj, Options{Threads: 2})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	img := loadPNG(b, testmodels.Path(b, "test-image-quadrants-64.png"))
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
