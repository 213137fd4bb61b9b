package redisstreams

import (
	"bytes"
	"errors"
	"maps"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/go-relay/relay/internal/delivery"
	"github.com/go-relay/relay/internal/testkit/fuzzkv"
)

// The fuzz targets of the stream-entry codec. Run each with
//
//	go test -run '^$' -fuzz '^FuzzDecode$' -fuzztime 60s ./redisstreams/
//	go test -run '^$' -fuzz '^FuzzCodecRoundTrip$' -fuzztime 60s ./redisstreams/
//
// Without -fuzz they run over their seeds and testdata/fuzz as plain tests.

// How FuzzDecode presents one field, two bits of its shape argument each.
const (
	fuzzAbsent  = iota // the entry has no such field
	fuzzString         // a string, as go-redis returns bulk strings
	fuzzBytes          // a []byte
	fuzzInteger        // an int64: a type decode must refuse
)

// fuzzField returns the value of a field of shape (one of fuzzAbsent...) and
// content b, and whether the entry holds it.
func fuzzField(shape byte, b []byte) (any, bool) {
	switch shape & 3 {
	case fuzzString:
		return string(b), true
	case fuzzBytes:
		return b, true
	case fuzzInteger:
		return int64(len(b)), true
	}
	return nil, false
}

// FuzzDecode reads arbitrary entries: each of the payload, UUID and metadata
// fields present or not, as a string, []byte or a wrong type, with arbitrary
// bytes (metadata included, so msgpack sees garbage), plus a field decode
// must ignore. decode must not panic, must report a missing or ill-typed
// payload, and must return the payload and UUID it was given.
func FuzzDecode(f *testing.F) {
	md, err := msgpack.Marshal(map[string]string{"k": "v", "": "\x00\xff"})
	if err != nil {
		f.Fatal(err)
	}
	// shape: bits 0-1 payload, 2-3 UUID, 4-5 metadata, 6 an extra field.
	f.Add(byte(0b010101), []byte("p"), []byte("u"), md)
	f.Add(byte(0b000001), []byte("p"), []byte(nil), []byte(nil))
	f.Add(byte(0b101010), []byte{}, []byte{0xff}, []byte{0x80})
	f.Add(byte(0b010100), []byte("p"), []byte("u"), md)
	f.Add(byte(0b110111), []byte("p"), []byte("u"), []byte("\xc1garbage"))
	f.Add(byte(0b010101), []byte("p"), []byte("u"), []byte{0xdd, 0xff, 0xff, 0xff, 0xff}) // array of 2^32-1 entries
	f.Add(byte(0b010101), []byte("p"), []byte("u"), []byte{0x81, 0xa1, 'k', 0x01})        // {"k": 1}
	f.Add(byte(0b010101), []byte("p"), []byte("u"), []byte{0xc0})                         // nil
	f.Fuzz(func(t *testing.T, shape byte, payload, uuid, metadata []byte) {
		values := make(map[string]any)
		if v, ok := fuzzField(shape, payload); ok {
			values[fieldPayload] = v
		}
		if v, ok := fuzzField(shape>>2, uuid); ok {
			values[fieldUUID] = v
		}
		if v, ok := fuzzField(shape>>4, metadata); ok {
			values[fieldMetadata] = v
		}
		if shape&(1<<6) != 0 {
			values["original_id"] = "1-0"
		}
		m, err := decode(values)

		switch shape & 3 {
		case fuzzAbsent:
			if !errors.Is(err, errNoPayload) {
				t.Fatalf("decode without payload: error %v, want errNoPayload", err)
			}
		case fuzzInteger:
			if err == nil {
				t.Fatal("decode of an int64 payload: no error")
			}
		default:
			if !bytes.Equal(m.Payload, payload) {
				t.Fatalf("decode payload = %q, want %q", m.Payload, payload)
			}
		}
		switch (shape >> 2) & 3 {
		case fuzzString, fuzzBytes:
			if m.UUID != string(uuid) {
				t.Fatalf("decode UUID = %q, want %q", m.UUID, uuid)
			}
		case fuzzInteger:
			if err == nil {
				t.Fatal("decode of an int64 UUID: no error")
			}
		}
		if (shape>>4)&3 == fuzzInteger && err == nil {
			t.Fatal("decode of int64 metadata: no error")
		}
		if err == nil && len(m.Metadata) > 0 {
			// What decode accepted must encode and decode to itself.
			back, err := decode(fuzzRead(t, mustEncode(t, m)))
			if err != nil || !maps.Equal(back.Metadata, m.Metadata) {
				t.Fatalf("metadata %q decoded from %q does not round-trip: %q, %v", m.Metadata, metadata, back.Metadata, err)
			}
		}
	})
}

// FuzzCodecRoundTrip checks that decode(encode(m)), with the fields read
// back as go-redis returns them, is m: the same UUID, payload and metadata,
// all made of arbitrary bytes. The encoder accepts every message.
func FuzzCodecRoundTrip(f *testing.F) {
	f.Add("u-1", []byte("hello"), fuzzkv.Bytes("a", "1", "b", ""))
	f.Add("", []byte(nil), []byte(nil))
	f.Add("\x00\xff", []byte{0, 0xff, '\n'}, fuzzkv.Bytes("clé", "välue\x00", "", "empty key", "\xff\xfe", " \r\n "))
	f.Add("6f1c2a9e-0d4b-4c1e-9a7f-2b3c4d5e6f70", []byte("{}"), fuzzkv.Bytes("_watermill_message_uuid", "x", "metadata", "y", "payload", "z"))
	f.Fuzz(func(t *testing.T, uuid string, payload, metadata []byte) {
		want := delivery.Message{UUID: uuid, Metadata: fuzzkv.Map(metadata), Payload: payload}
		got, err := decode(fuzzRead(t, mustEncode(t, want)))
		if err != nil {
			t.Fatalf("decode(encode(%+v)): %v", want, err)
		}
		if got.UUID != want.UUID || !bytes.Equal(got.Payload, want.Payload) || !maps.Equal(got.Metadata, want.Metadata) {
			t.Fatalf("decode(encode(%+v)) = %+v", want, got)
		}
		if got.Payload == nil {
			t.Fatal("payload decoded as nil; want a non-nil slice")
		}
	})
}

func mustEncode(t *testing.T, m delivery.Message) []any {
	t.Helper()
	values, err := encode(m)
	if err != nil {
		t.Fatalf("encode(%+v): %v", m, err)
	}
	return values
}

// fuzzRead turns XADD's field-value list into what go-redis returns for the
// entry: a map of strings. A field given twice fails the test.
func fuzzRead(t *testing.T, values []any) map[string]any {
	t.Helper()
	if len(values)%2 != 0 {
		t.Fatalf("odd field-value list %q", values)
	}
	m := make(map[string]any, len(values)/2)
	for i := 0; i < len(values); i += 2 {
		k, ok := values[i].(string)
		if !ok {
			t.Fatalf("field name %v has type %T", values[i], values[i])
		}
		if _, dup := m[k]; dup {
			t.Fatalf("field %q given twice", k)
		}
		switch v := values[i+1].(type) {
		case string:
			m[k] = v
		case []byte:
			m[k] = string(v)
		default:
			t.Fatalf("field %q has type %T", k, v)
		}
	}
	return m
}
