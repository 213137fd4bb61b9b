package redisstreams

import (
	"bytes"
	"errors"
	"maps"
	"runtime"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/go-relay/relay/internal/delivery"
)

// asRead turns XADD's field-value list into what go-redis returns for the
// entry: a map of strings.
func asRead(t *testing.T, values []any) map[string]any {
	t.Helper()
	m := make(map[string]any, len(values)/2)
	for i := 0; i < len(values); i += 2 {
		switch v := values[i+1].(type) {
		case string:
			m[values[i].(string)] = v
		case []byte:
			m[values[i].(string)] = string(v)
		default:
			t.Fatalf("field %v has type %T", values[i], v)
		}
	}
	return m
}

func TestCodecRoundTrip(t *testing.T) {
	binary := []byte{0, 0xff, 0xfe, '\n', 0}
	for _, tc := range []struct {
		name string
		msg  delivery.Message
	}{
		{"uuid, metadata and payload", delivery.Message{UUID: "u-1", Metadata: map[string]string{"a": "1", "b": ""}, Payload: []byte("hello")}},
		{"no metadata", delivery.Message{UUID: "u-2", Payload: []byte("x")}},
		{"nil payload", delivery.Message{UUID: "u-3"}},
		{"binary payload and unicode metadata", delivery.Message{UUID: "u-4", Metadata: map[string]string{"clé": "välue\x00"}, Payload: binary}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			values, err := encode(tc.msg)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			got, err := decode(asRead(t, values))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if got.UUID != tc.msg.UUID || !bytes.Equal(got.Payload, tc.msg.Payload) || !maps.Equal(got.Metadata, tc.msg.Metadata) {
				t.Fatalf("decode(encode(%+v)) = %+v", tc.msg, got)
			}
			if tc.msg.Payload == nil && got.Payload == nil {
				t.Fatal("empty payload decoded as nil; want empty")
			}
		})
	}
}

func TestDecode(t *testing.T) {
	md, err := msgpack.Marshal(map[string]string{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	notStrings, err := msgpack.Marshal(map[string]int{"k": 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		values  map[string]any
		want    delivery.Message
		wantErr string // substring; empty for no error
	}{
		{"watermill-redisstream entry", map[string]any{fieldUUID: "u", fieldMetadata: string(md), fieldPayload: "p"},
			delivery.Message{UUID: "u", Metadata: map[string]string{"k": "v"}, Payload: []byte("p")}, ""},
		{"watermill entry without metadata", map[string]any{fieldUUID: "u", fieldMetadata: "", fieldPayload: "p"},
			delivery.Message{UUID: "u", Payload: []byte("p")}, ""},
		{"seed entry: only payload", map[string]any{fieldPayload: "p"},
			delivery.Message{Payload: []byte("p")}, ""},
		{"extra fields are ignored", map[string]any{fieldPayload: "p", "original_id": "1-0"},
			delivery.Message{Payload: []byte("p")}, ""},
		{"payload as bytes", map[string]any{fieldPayload: []byte("p")},
			delivery.Message{Payload: []byte("p")}, ""},
		{"no payload field", map[string]any{fieldUUID: "u", "data": "p"},
			delivery.Message{UUID: "u"}, "no payload field"},
		{"corrupt metadata", map[string]any{fieldUUID: "u", fieldMetadata: "\xc1garbage", fieldPayload: "p"},
			delivery.Message{UUID: "u", Payload: []byte("p")}, "decode metadata field"},
		{"metadata of non-strings", map[string]any{fieldMetadata: string(notStrings), fieldPayload: "p"},
			delivery.Message{Payload: []byte("p")}, "decode metadata field"},
		{"payload of a wrong type", map[string]any{fieldPayload: int64(3)},
			delivery.Message{}, "field payload has type int64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decode(tc.values)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("decode: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("decode error = %v, want one containing %q", err, tc.wantErr)
			}
			if got.UUID != tc.want.UUID || !bytes.Equal(got.Payload, tc.want.Payload) || !maps.Equal(got.Metadata, tc.want.Metadata) {
				t.Fatalf("decode = %+v, want %+v", got, tc.want)
			}
		})
	}
	if _, err := decode(map[string]any{}); !errors.Is(err, errNoPayload) {
		t.Fatalf("decode of an empty entry: %v, want errNoPayload", err)
	}
}

func TestEncodeFieldsMatchWatermill(t *testing.T) {
	values, err := encode(delivery.Message{UUID: "u", Metadata: map[string]string{"k": "v"}, Payload: []byte("p")})
	if err != nil {
		t.Fatal(err)
	}
	m := asRead(t, values)
	if len(m) != 3 || m["_watermill_message_uuid"] != "u" || m["payload"] != "p" {
		t.Fatalf("fields = %q", m)
	}
	var md map[string]string
	if err := msgpack.Unmarshal([]byte(m["metadata"].(string)), &md); err != nil || md["k"] != "v" {
		t.Fatalf("metadata field %q: %v, %v", m["metadata"], md, err)
	}
}

func TestDecodeRefusesMetadataClaimingMoreEntriesThanItsBytes(t *testing.T) {
	// A map32 header claiming 2^32-1 entries in five bytes: msgpack used to
	// size a map from it, allocating tens of megabytes per decode.
	values := map[string]any{fieldPayload: "p", fieldMetadata: "\xdf\xff\xff\xff\xff"}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := decode(values)
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("decode accepted a metadata map header claiming 2^32-1 entries in 5 bytes")
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Fatalf("decode allocated %d bytes for 5 bytes of metadata", grew)
	}
}
