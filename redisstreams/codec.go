package redisstreams

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/go-relay/relay/internal/delivery"
)

// Field names of a stream entry: those of watermill-redisstream, so that its
// publishers and subscribers and ours read each other's entries.
const (
	fieldUUID     = "_watermill_message_uuid"
	fieldMetadata = "metadata"
	fieldPayload  = "payload"
)

// errNoPayload is the decode error of an entry without a payload field.
var errNoPayload = errors.New("entry has no " + fieldPayload + " field")

// noMetadata is the metadata field of a message without metadata, boxed
// once: go-redis only reads it.
var noMetadata any = []byte{}

// encode returns the XADD field-value list of m. Metadata is a msgpack map of
// strings, empty when m has none, as watermill-redisstream writes it.
func encode(m delivery.Message) ([]any, error) {
	md := noMetadata
	if len(m.Metadata) > 0 {
		b, err := msgpack.Marshal(m.Metadata)
		if err != nil {
			return nil, fmt.Errorf("encode metadata: %w", err)
		}
		md = b
	}
	payload := m.Payload
	if payload == nil {
		payload = []byte{} // go-redis writes nil as "", but say so
	}
	return []any{fieldUUID, m.UUID, fieldMetadata, md, fieldPayload, payload}, nil
}

// decode reads an entry's fields. The payload field is required; the UUID and
// metadata fields are optional, so the seed's entries (only payload) decode
// with an empty UUID. Other fields are ignored. On error the returned message
// holds what could be read, for the dead letter.
func decode(values map[string]any) (delivery.Message, error) {
	var m delivery.Message
	var errs []error
	if raw, ok := values[fieldPayload]; !ok {
		errs = append(errs, errNoPayload)
	} else if b, err := bytesOf(fieldPayload, raw); err != nil {
		errs = append(errs, err)
	} else {
		m.Payload = b
	}
	if raw, ok := values[fieldUUID]; ok {
		if id, isString := raw.(string); isString {
			m.UUID = id // as go-redis hands it over: no copy, twice
		} else if b, err := bytesOf(fieldUUID, raw); err != nil {
			errs = append(errs, err)
		} else {
			m.UUID = string(b)
		}
	}
	if raw, ok := values[fieldMetadata]; ok {
		b, err := bytesOf(fieldMetadata, raw)
		if err == nil && len(b) > 0 {
			err = checkMapLen(b)
		}
		if err == nil && len(b) > 0 {
			// Unmarshal into a variable of this branch: taking the address
			// of m's field put m on the heap for every entry, metadata or
			// not.
			var md map[string]string
			if err = msgpack.Unmarshal(b, &md); err != nil {
				err = fmt.Errorf("decode %s field: %w", fieldMetadata, err)
			} else {
				m.Metadata = md
			}
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return m, errors.Join(errs...)
}

// checkMapLen refuses msgpack whose map header claims more entries than its
// bytes can hold (each entry takes at least two bytes): msgpack sizes the map
// from the header, so five corrupt bytes claiming 2^32-1 entries made a decode
// allocate some 84 MB.
func checkMapLen(b []byte) error {
	n, err := msgpack.NewDecoder(bytes.NewReader(b)).DecodeMapLen()
	if err != nil || n <= (len(b)-1)/2 {
		return nil // not a map, or a plausible one: Unmarshal has the last word
	}
	return fmt.Errorf("metadata claims %d entries in %d bytes", n, len(b))
}

// bytesOf returns a field value as go-redis hands it over: a string (RESP2
// and RESP3 bulk strings), or []byte.
func bytesOf(field string, v any) ([]byte, error) {
	switch v := v.(type) {
	case string:
		return []byte(v), nil
	case []byte:
		return v, nil
	}
	return nil, fmt.Errorf("field %s has type %T, want a string", field, v)
}
