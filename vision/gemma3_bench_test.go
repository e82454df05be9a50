package vision

import (
	"image"
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
	benchEncode(b, "STEPFLASH_GEMMA3_FULL", synthmodels.Gemma3Full, func(string) image.Image {
		return loadPNG(b, testmodels.Path(b, "test-image-quadrants-64.png"))
	}, 256)
}

// benchEncode times the encoding of one image (made by img, given the
// files' directory) by the projector that write puts in $env (or a
// temporary directory): want positions, 2 threads.
func benchEncode(b *testing.B, env string, write func(dir string) (text, proj string, err error), img func(dir string) image.Image, want int) {
	dir := os.Getenv(env)
	if dir == "" {
		dir = b.TempDir()
	}
	_, proj, err := write(dir)
	if err != nil {
		b.Fatal(err)
	}
	e, err := Open(proj, Options{Threads: 2})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	im := img(dir)
	for b.Loop() {
		segs, err := e.Embed(im)
		if err != nil {
			b.Fatal(err)
		}
		if Positions(segs) != want {
			b.Fatalf("%d positions, want %d", Positions(segs), want)
		}
	}
}
