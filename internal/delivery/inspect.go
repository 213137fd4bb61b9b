package delivery

import (
	"maps"
	"strconv"
	"time"

	"github.com/go-relay/relay"
)

// ReadDeadLetter returns the relay.DeadLetter of m, stored as id on the
// dead-letter topic topic at t: the source topic, id, attempts and reason
// are read from relay's metadata keys, and left empty when m lacks them (a
// message relay did not write).
func ReadDeadLetter(topic, id string, t time.Time, m Message) relay.DeadLetter {
	attempts, _ := strconv.Atoi(m.Metadata[relay.MetadataAttempts])
	return relay.DeadLetter{
		Topic:       topic,
		ID:          id,
		Time:        t,
		SourceTopic: m.Metadata[relay.MetadataSourceTopic],
		SourceID:    m.Metadata[relay.MetadataSourceID],
		Attempts:    attempts,
		Reason:      m.Metadata[relay.MetadataReason],
		UUID:        m.UUID,
		Payload:     m.Payload,
		Metadata:    maps.Clone(m.Metadata),
	}
}

// Redriven returns the message that redriving dl publishes, under the new
// UUID uuid: dl's payload and metadata without relay's dead-letter keys,
// plus relay.MetadataRedrivenFrom naming dl.
func Redriven(dl relay.DeadLetter, uuid string) Message {
	md := maps.Clone(dl.Metadata)
	if md == nil {
		md = make(map[string]string, 1)
	}
	for _, k := range []string{relay.MetadataSourceTopic, relay.MetadataSourceID, relay.MetadataAttempts, relay.MetadataReason} {
		delete(md, k)
	}
	md[relay.MetadataRedrivenFrom] = dl.Topic + "/" + dl.ID
	return Message{UUID: uuid, Metadata: md, Payload: dl.Payload}
}

// RedriveTopic returns where dl goes when redriven to to: to, or dl's
// source topic when to is empty; an error wrapping relay.ErrInvalidTopic
// when that is not a valid topic (or dl names none).
func RedriveTopic(dl relay.DeadLetter, to string) (string, error) {
	if to == "" {
		to = dl.SourceTopic
	}
	if err := relay.ValidateTopic(to); err != nil {
		return "", err
	}
	return to, nil
}
