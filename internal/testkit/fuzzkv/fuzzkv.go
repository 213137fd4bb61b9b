// Package fuzzkv turns fuzz bytes into string maps and back, for the fuzz
// targets of the backends' wire codecs.
package fuzzkv

// Map reads a map from fuzz bytes: entries of a length byte and a key, then a
// length byte and a value (lengths cut to what is left). Empty input gives nil.
func Map(b []byte) map[string]string {
	var md map[string]string
	next := func() string {
		if len(b) == 0 {
			return ""
		}
		n := min(int(b[0]), len(b)-1)
		s := string(b[1 : 1+n])
		b = b[1+n:]
		return s
	}
	for len(b) > 0 {
		k := next()
		if md == nil {
			md = make(map[string]string)
		}
		md[k] = next()
	}
	return md
}

// Bytes is the inverse of Map, for seeds: alternating keys and values, each at
// most 255 bytes.
func Bytes(kv ...string) []byte {
	var b []byte
	for _, s := range kv {
		b = append(b, byte(len(s)))
		b = append(b, s...)
	}
	return b
}
