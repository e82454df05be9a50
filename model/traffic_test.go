package model_test

import (
	"testing"

	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/internal/testmodels"
	"github.com/stepflash/stepflash/model"
)

func TestWeightBytesPerToken(t *testing.T) {
	f, err := gguf.Open(testmodels.Path(t, "tiny-qwen3moe-F32.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, err := model.ReadConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	// F32, 2 layers: per layer attention q,k,v,o = 256*256 + 2*256*128 + 256*256 floats, norms 256*2 + 64*2,
	// router 256*8; experts 3 * 256*64 per expert; output 256*512; one embedding row 256; output_norm 256.
	layer := func(k int64) int64 {
		return 4 * (256*256 + 2*256*128 + 256*256 + 2*256 + 2*64 + 256*8 + k*3*256*64)
	}
	fixed := int64(4 * (256*512 + 256 + 256))
	for _, k := range []int{1, 2} {
		want := fixed + 2*layer(int64(k))
		if got := model.WeightBytesPerToken(f, cfg, k); got != want {
			t.Errorf("k=%d: %d bytes, want %d", k, got, want)
		}
	}
	if model.WeightBytesPerToken(f, cfg, 0) != model.WeightBytesPerToken(f, cfg, 2) {
		t.Error("0 experts should mean the trained count (2)")
	}
}
