package relay_test

import (
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-relay/relay"
)

// nilTextError is an error whose Error method panics on a nil receiver.
type nilTextError struct{ text *string }

func (e *nilTextError) Error() string { return *e.text }

// callInGoroutine runs f in a goroutine of its own, as Watermill's router runs
// each handler, and returns what it panicked with (nil when it returned or
// called runtime.Goexit).
func callInGoroutine(f func()) (panicked any) {
	done := make(chan any, 1)
	go func() {
		ok := false
		defer func() {
			if !ok {
				done <- recover()
			}
		}()
		f()
		ok = true
		done <- nil
	}()
	return <-done
}

func TestNackReasonNacksAfterGoexit(t *testing.T) {
	msg := message.NewMessage(watermill.NewUUID(), []byte("x"))
	h := relay.NackReason(func(*message.Message) ([]*message.Message, error) {
		runtime.Goexit()
		return nil, nil
	})
	require.Nil(t, callInGoroutine(func() { _, _ = h(msg) }))
	select {
	case <-msg.Nacked():
	case <-msg.Acked():
		t.Fatal("a message whose handler called runtime.Goexit was acked")
	case <-time.After(time.Second): // settled synchronously: a second is ample
		t.Fatal("a message whose handler called runtime.Goexit was neither acked nor nacked")
	}
}

func TestNackReasonPassesPanicsOn(t *testing.T) {
	msg := message.NewMessage(watermill.NewUUID(), []byte("x"))
	h := relay.NackReason(func(*message.Message) ([]*message.Message, error) { panic("induced") })
	assert.Equal(t, "induced", callInGoroutine(func() { _, _ = h(msg) }))
	select {
	case <-msg.Nacked():
		t.Error("NackReason nacked a panicking handler's message itself; the router (or a middleware that recovers) decides")
	default:
	}
}

func TestNackReasonSurvivesAnErrorMethodThatPanics(t *testing.T) {
	msg := message.NewMessage(watermill.NewUUID(), []byte("x"))
	var typedNil *nilTextError
	h := relay.NackReason(func(*message.Message) ([]*message.Message, error) { return nil, typedNil })
	var err error
	require.Nil(t, callInGoroutine(func() { _, err = h(msg) }), "NackReason panicked")
	assert.True(t, errors.Is(err, typedNil), "NackReason returns the handler's error unchanged, got %v", err)
	assert.Contains(t, msg.Metadata.Get(relay.MetadataReason), "panics in Error")
}
