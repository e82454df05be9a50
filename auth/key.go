// Package auth decides who may call the API: region-bound API keys (their
// format, hashing and store), the HTTP middleware that checks them, and the
// per-key rate limits and budgets checked before any work starts.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"time"
)

// A key reads sk-<region>-<32 base62 random>-<6 base62 checksum>
// (docs/keys.md). The checksum is CRC-32 (IEEE) of "sk-<region>-<random>" in
// base62, so a typo is caught offline without a store; the region tag lets
// a server tell a key of another region from an unknown one without sharing
// any state with that region.
const (
	randomLen   = 32
	checksumLen = 6
	// PrefixLen is how many random characters the display prefix (and key
	// id) keeps: "sk-cn-" and 8 characters, like "sk-cn-4fQz81Ab".
	PrefixLen = 8
	// MaxRegionLen bounds a region name.
	MaxRegionLen = 16
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// ValidRegion reports whether name can be a region tag: 1 to 16 lowercase
// ASCII letters and digits.
func ValidRegion(name string) bool {
	if len(name) == 0 || len(name) > MaxRegionLen {
		return false
	}
	for _, c := range []byte(name) {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// checksum is the 6-character base62 checksum of body ("sk-<region>-<random>").
func checksum(body string) string {
	v := uint64(crc32.ChecksumIEEE([]byte(body)))
	var b [checksumLen]byte
	for i := checksumLen - 1; i >= 0; i-- {
		b[i] = base62[v%62]
		v /= 62
	}
	return string(b[:])
}

// Generate makes a new random key for region.
func Generate(region string) (string, error) {
	if !ValidRegion(region) {
		return "", fmt.Errorf("auth: region %q: want 1 to %d lowercase letters and digits", region, MaxRegionLen)
	}
	var r [randomLen]byte
	// 62 does not divide 256: draw bytes below 248 (= 4×62) to keep every
	// character equally likely.
	for i := 0; i < randomLen; {
		var buf [64]byte
		if _, err := rand.Read(buf[:]); err != nil {
			return "", err
		}
		for _, c := range buf {
			if c < 248 && i < randomLen {
				r[i] = base62[c%62]
				i++
			}
		}
	}
	body := "sk-" + region + "-" + string(r[:])
	return body + "-" + checksum(body), nil
}

// Parsed is what a key's text says about itself.
type Parsed struct {
	Region string
	// Prefix is the display prefix: "sk-<region>-" and the first PrefixLen
	// random characters. It is the key's public id.
	Prefix string
	// Hash is the SHA-256 of the whole key: all a store keeps.
	Hash [32]byte
}

// Errors of Parse.
var (
	// ErrMalformed: the text is not shaped like a key at all.
	ErrMalformed = errors.New("not an API key of the form sk-<region>-<32 characters>-<6 characters>")
	// ErrChecksum: shaped like a key, but the checksum does not match: a
	// typo or a truncated copy.
	ErrChecksum = errors.New("the API key's checksum does not match: it was mistyped or copied incompletely")
)

// Parse checks a key's shape and checksum offline.
func Parse(key string) (Parsed, error) {
	rest, ok := strings.CutPrefix(key, "sk-")
	if !ok {
		return Parsed{}, ErrMalformed
	}
	region, rest, ok := strings.Cut(rest, "-")
	if !ok || !ValidRegion(region) || len(rest) != randomLen+1+checksumLen || rest[randomLen] != '-' {
		return Parsed{}, ErrMalformed
	}
	for i := range len(rest) {
		if i != randomLen && strings.IndexByte(base62, rest[i]) < 0 {
			return Parsed{}, ErrMalformed
		}
	}
	body := key[:len(key)-checksumLen-1]
	if subtle.ConstantTimeCompare([]byte(checksum(body)), []byte(key[len(key)-checksumLen:])) != 1 {
		return Parsed{}, ErrChecksum
	}
	return Parsed{Region: region, Prefix: "sk-" + region + "-" + rest[:PrefixLen], Hash: sha256.Sum256([]byte(key))}, nil
}

// Key is a stored key: everything but the key itself.
type Key struct {
	// ID is the display prefix (Parsed.Prefix), unique in a store.
	ID     string
	Hash   [32]byte
	Region string
	Name   string
	// BudgetUSD caps the cost of the key's requests per BudgetPeriod (0: none).
	BudgetUSD float64
	// BudgetPeriod is "day", "month" or "total" (calendar periods in UTC).
	BudgetPeriod string
	// RPM and TPM cap requests and tokens per minute (0: none).
	RPM, TPM int
	// Operator marks a key allowed to read the whole ledger (GET
	// /v1/usage, the dashboard): every key's usage, not only its own.
	Operator bool
	Created  time.Time
	// Revoked is when the key was revoked; zero while it is live.
	Revoked time.Time
}

// Matches reports whether p's hash is k's, in constant time.
func (k *Key) Matches(p Parsed) bool {
	return subtle.ConstantTimeCompare(k.Hash[:], p.Hash[:]) == 1
}

// ErrNotFound is a store's answer for a key it does not hold.
var ErrNotFound = errors.New("auth: no such key")

// Store holds a region's keys (or several regions' keys: every Key names
// its region). Implementations are safe for concurrent use.
type Store interface {
	// CreateKey adds k; an existing ID or hash is an error.
	CreateKey(ctx context.Context, k Key) error
	// KeyByHash returns the key with this hash, revoked or not, or
	// ErrNotFound.
	KeyByHash(ctx context.Context, hash [32]byte) (Key, error)
	// Keys lists the keys of region ("" for all), oldest first.
	Keys(ctx context.Context, region string) ([]Key, error)
	// RevokeKey marks the key with this ID (or, when no ID matches, the
	// only key with this name) revoked at the given time and returns it;
	// ErrNotFound when none matches, an error naming the IDs when a name
	// matches several.
	RevokeKey(ctx context.Context, idOrName string, at time.Time) (Key, error)
	// CountKeys is the number of keys ever issued for region ("" for
	// all), revoked ones included: revoking a region's last key must not
	// open the region to everyone.
	CountKeys(ctx context.Context, region string) (int, error)
}
