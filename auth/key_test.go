package auth

import (
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
)

// TestGenerateParse: a generated key parses back to its region, prefix and
// hash; every single-character change is caught by the checksum or the
// shape, never accepted.
func TestGenerateParse(t *testing.T) {
	for _, region := range []string{"global", "cn", "eu1"} {
		key, err := Generate(region)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(key, "sk-"+region+"-") || len(key) != len("sk-"+region+"-")+randomLen+1+checksumLen {
			t.Fatalf("key %q has the wrong shape", key)
		}
		p, err := Parse(key)
		if err != nil {
			t.Fatalf("%q: %v", key, err)
		}
		if p.Region != region || p.Prefix != key[:len("sk-"+region+"-")+PrefixLen] || p.Hash != sha256.Sum256([]byte(key)) {
			t.Errorf("%q parsed as %+v", key, p)
		}
		body := len("sk-" + region + "-")
		for i := body; i < len(key); i++ {
			if key[i] == '-' {
				continue
			}
			for _, c := range []byte{'0', 'a', 'Z'} {
				if c == key[i] {
					continue
				}
				typo := key[:i] + string(c) + key[i+1:]
				if _, err := Parse(typo); !errors.Is(err, ErrChecksum) {
					t.Errorf("%q (typo at %d): %v, want the checksum error", typo, i, err)
				}
			}
		}
	}
}

func TestParseMalformed(t *testing.T) {
	good, _ := Generate("cn")
	for _, s := range []string{
		"", "sk-", "hello", "Bearer " + good, good + "x", good[:len(good)-1], strings.ToUpper(good[:5]) + good[5:],
		"sk-CN-" + good[6:], "sk--" + good[6:], "sk-cn_x-" + good[6:], strings.Replace(good, "-", "_", 3),
		good[:10] + "!" + good[11:], "sk-waytoolongregionname-" + good[6:],
	} {
		if _, err := Parse(s); !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%q) = %v, want ErrMalformed", s, err)
		}
	}
	if _, err := Generate("Bad-Region"); err == nil {
		t.Error("Generate accepted an invalid region")
	}
}

// TestGenerateSpread: the random part uses all of base62 about evenly.
func TestGenerateSpread(t *testing.T) {
	counts := map[byte]int{}
	for range 2000 {
		key, _ := Generate("x")
		for _, c := range []byte(key[5 : 5+randomLen]) {
			counts[c]++
		}
	}
	if len(counts) != 62 {
		t.Fatalf("%d distinct characters, want 62", len(counts))
	}
	for c, n := range counts {
		if n < 2000*32/62*8/10 || n > 2000*32/62*12/10 { // within 20% of 1032
			t.Errorf("%q drawn %d times of 64000", c, n)
		}
	}
}
