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
	benchEncode(b, "STEPFLASH_QWEN25VL_FULL", synthmodels.Qwen25VLFull, func(dir string) image.Image {
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
		return img
	}, 256)
}
