package pubsubtest

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func (s *byteSuite) testPersistAcrossRestart(t *testing.T) {
	switch {
	case s.h.Restart == nil:
		t.Skip("Harness.Restart is nil: cannot restart the backend")
	case !s.h.Capabilities.Persistent:
		t.Skip("Capabilities.Persistent is false: messages need not survive a restart")
	}
	const n = 20
	topic := NewTopic(t)
	want := messages("s", n)
	publishAll(t, s.broker(t, DefaultConfig()), topic, want)
	s.h.Restart(t)
	in := newInbox()
	b := s.broker(t, DefaultConfig())
	var err error
	// Subscribe may fail while the backend reconnects; it must succeed soon.
	if !poll(waitLong, func() bool { err = b.Subscribe(topic, in.handler(nil)); return err == nil }) {
		t.Fatalf("Subscribe after restart kept failing for %v: %v", waitLong, err)
	}
	in.waitDistinct(t, n, waitLong, "group subscribed after restart")
	assert.NoError(t, checkAtLeastOnce(in.counts(), want))
}

func (s *byteSuite) testReconnect(t *testing.T) {
	if s.h.Restart == nil {
		t.Skip("Harness.Restart is nil: cannot restart the backend")
	}
	const n = 10
	topic := NewTopic(t)
	before, after := messages("before", n), messages("after", n)
	in := newInbox()
	subscribe(t, s.broker(t, DefaultConfig()), topic, in.handler(nil))
	pub := s.broker(t, DefaultConfig())
	publishAll(t, pub, topic, before)
	in.waitDistinct(t, n, waitLong, "subscription before restart")
	s.h.Restart(t)
	for _, p := range after {
		publishUntil(t, pub, topic, []byte(p), waitLong)
	}
	in.waitDistinct(t, 2*n, waitLong, "subscription after restart")
	// Redelivery across a restart is allowed; loss is not.
	assert.NoError(t, checkAtLeastOnce(in.counts(), append(before, after...)))
}
