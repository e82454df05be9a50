package tokenizer

import (
	"slices"
	"sort"
	"sync"
	"unicode"
)

// Code point classes as llama.cpp's unicode tables describe them. The general
// categories are mutually exclusive; whitespace is a separate property (the
// code points Python's regex module matches with \s).
const (
	cfNumber      uint16 = 1 << 1 // \p{N}
	cfLetter      uint16 = 1 << 2 // \p{L}
	cfSeparator   uint16 = 1 << 3 // \p{Z}
	cfAccentMark  uint16 = 1 << 4 // \p{M}
	cfPunctuation uint16 = 1 << 5 // \p{P}
	cfSymbol      uint16 = 1 << 6 // \p{S}
	cfControl     uint16 = 1 << 7 // \p{C} (including unassigned code points)
	cfCategories  uint16 = 0xFF
	cfWhitespace  uint16 = 1 << 8
)

// isWhitespace reports whether r is in the whitespace set llama.cpp uses
// (Unicode White_Space, the same as Python regex's \s).
func isWhitespace(r rune) bool {
	switch {
	case r >= 0x09 && r <= 0x0D, r == 0x20, r == 0x85, r == 0xA0, r == 0x1680,
		r >= 0x2000 && r <= 0x200A, r == 0x2028, r == 0x2029, r == 0x202F, r == 0x205F, r == 0x3000:
		return true
	}
	return false
}

var (
	bmpFlagsOnce sync.Once
	bmpFlags     []uint16
)

func computeFlags(r rune) uint16 {
	var f uint16
	switch {
	case r < 0 || r > unicode.MaxRune:
		return cfControl
	case unicode.IsLetter(r):
		f = cfLetter
	case unicode.IsNumber(r):
		f = cfNumber
	case unicode.IsMark(r):
		f = cfAccentMark
	case unicode.IsPunct(r):
		f = cfPunctuation
	case unicode.IsSymbol(r):
		f = cfSymbol
	case unicode.In(r, unicode.Z):
		f = cfSeparator
	default:
		f = cfControl
	}
	if isWhitespace(r) {
		f |= cfWhitespace
	}
	return f
}

// cptFlags returns the class flags of a code point (a table lookup in the
// Basic Multilingual Plane, computed above it).
func cptFlags(r rune) uint16 {
	if r >= 0 && r < 0x10000 {
		bmpFlagsOnce.Do(func() {
			t := make([]uint16, 0x10000)
			for c := range t {
				t[c] = computeFlags(rune(c))
			}
			bmpFlags = t
		})
		return bmpFlags[r]
	}
	return computeFlags(r)
}

// toLower maps a code point to its lower case as llama.cpp's table does (the
// first code point of Python's str.lower, which equals unicode.ToLower).
func toLower(r rune) rune {
	if r < 0x80 {
		if r >= 'A' && r <= 'Z' {
			return r + ('a' - 'A')
		}
		return r
	}
	return unicode.ToLower(r)
}

// nfdFirst maps a code point to the first code point of its canonical
// decomposition (NFD), which is how llama.cpp's WPM tokenizer strips accents.
func nfdFirst(r rune) rune {
	if r < 0xC0 {
		return r
	}
	i := sort.Search(len(nfdRanges), func(i int) bool { return nfdRanges[i][0] > uint32(r) }) - 1
	if i >= 0 && uint32(r) <= nfdRanges[i][1] {
		return rune(nfdRanges[i][2])
	}
	return r
}

// utf8Len is the length of the UTF-8 sequence that starts with byte b, judged
// from its high nibble only (llama.cpp's unicode_len_utf8).
func utf8Len(b byte) int {
	switch b >> 4 {
	case 0xC, 0xD:
		return 2
	case 0xE:
		return 3
	case 0xF:
		return 4
	}
	return 1
}

// decodeCpts splits s into code points the way llama.cpp does: well-formed
// sequences by their bit patterns (without rejecting overlong forms or
// surrogates), and each byte that starts no sequence as U+FFFD.
func decodeCpts(s string, dst []rune) []rune {
	dst = slices.Grow(dst, len(s))
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c < 0x80:
			dst = append(dst, rune(c))
			i++
			continue
		case c&0x40 == 0:
			// lone continuation byte
		case c&0x20 == 0:
			if i+1 < len(s) && s[i+1]&0xC0 == 0x80 {
				dst = append(dst, rune(c&0x1F)<<6|rune(s[i+1]&0x3F))
				i += 2
				continue
			}
		case c&0x10 == 0:
			if i+2 < len(s) && s[i+1]&0xC0 == 0x80 && s[i+2]&0xC0 == 0x80 {
				dst = append(dst, rune(c&0x0F)<<12|rune(s[i+1]&0x3F)<<6|rune(s[i+2]&0x3F))
				i += 3
				continue
			}
		case c&0x08 == 0:
			if i+3 < len(s) && s[i+1]&0xC0 == 0x80 && s[i+2]&0xC0 == 0x80 && s[i+3]&0xC0 == 0x80 {
				dst = append(dst, rune(c&0x07)<<18|rune(s[i+1]&0x3F)<<12|rune(s[i+2]&0x3F)<<6|rune(s[i+3]&0x3F))
				i += 4
				continue
			}
		}
		dst = append(dst, 0xFFFD)
		i++
	}
	return dst
}

// appendCpt appends the UTF-8 encoding of a code point as llama.cpp writes it
// (surrogates are encoded like any other 3-byte code point; values past
// U+10FFFF, which llama.cpp rejects, become U+FFFD).
func appendCpt(dst []byte, r rune) []byte {
	switch {
	case r >= 0 && r <= 0x7F:
		return append(dst, byte(r))
	case r >= 0x80 && r <= 0x7FF:
		return append(dst, 0xC0|byte(r>>6), 0x80|byte(r&0x3F))
	case r >= 0x800 && r <= 0xFFFF:
		return append(dst, 0xE0|byte(r>>12), 0x80|byte(r>>6&0x3F), 0x80|byte(r&0x3F))
	case r >= 0x10000 && r <= 0x10FFFF:
		return append(dst, 0xF0|byte(r>>18), 0x80|byte(r>>12&0x3F), 0x80|byte(r>>6&0x3F), 0x80|byte(r&0x3F))
	}
	return append(dst, 0xEF, 0xBF, 0xBD)
}

// GPT-2's reversible byte-to-unicode mapping: printable Latin-1 bytes map to
// themselves, the other 68 bytes to U+0100.. in byte order.
var (
	byteToRune [256]rune
	runeToByte = map[rune]byte{}
)

func init() {
	n := rune(0)
	for b := 0; b < 256; b++ {
		if (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			byteToRune[b] = rune(b)
		} else {
			byteToRune[b] = 256 + n
			n++
		}
		runeToByte[byteToRune[b]] = byte(b)
	}
}
