package natsjs

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Limits of the names relay derives for JetStream.
const (
	// MaxNameLength is the longest stream or consumer name that [StreamName]
	// and [ConsumerName] return, in bytes. JetStream allows 255; relay keeps
	// names shorter since they become directory names in the file store.
	MaxNameLength = 64
	// hashLength is the number of hex digits of the suffix of a rewritten
	// name: 64 bits of SHA-256.
	hashLength = 16
)

// StreamName returns the name of the stream that holds topic. Topics are the
// stream's subjects; the name only has to be a valid, unique JetStream name:
//
//   - A topic of ASCII letters, digits, '-' and '_', at most [MaxNameLength]
//     bytes, that does not end like a rewritten name (an '_' and 16 hex
//     digits), is its own name: "orders" → "orders".
//   - Any other topic is rewritten: every other byte becomes '_', the result is
//     cut to leave room for the suffix, and "_" plus 16 hex digits of the
//     topic's SHA-256 are appended: "orders.eu" → "orders_eu_" + hash.
//
// A kept name never looks like a rewritten one, so two topics share a stream
// name only if their SHA-256 share their first 64 bits. The result never holds
// '.', '*', '>', white space or a path separator.
func StreamName(topic string) string { return safeName(topic) }

// ConsumerName returns the durable consumer name of group, by the rule of
// [StreamName]: "go-relay" → "go-relay".
func ConsumerName(group string) string { return safeName(group) }

func safeName(s string) string {
	b := []byte(s)
	changed := false
	for i, c := range b {
		if !isNameByte(c) {
			b[i] = '_'
			changed = true
		}
	}
	if !changed && len(b) <= MaxNameLength && !looksRewritten(s) {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	suffix := "_" + hex.EncodeToString(sum[:])[:hashLength]
	if keep := MaxNameLength - len(suffix); len(b) > keep {
		b = b[:keep]
	}
	return string(b) + suffix
}

func isNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// looksRewritten reports whether s ends like a name safeName rewrote, so
// that such a name is rewritten too and cannot collide with a rewritten one.
func looksRewritten(s string) bool {
	if len(s) < hashLength+1 || s[len(s)-hashLength-1] != '_' {
		return false
	}
	return strings.Trim(s[len(s)-hashLength:], "0123456789abcdef") == ""
}
