package relay

import (
	"errors"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"
)

// MetadataPermanent is set to "true" on a consumed Watermill message by
// [NackReason] when the handler's error wraps [ErrPermanent].
const MetadataPermanent = "relay_permanent"

// NackReason is a Watermill router middleware that tells relay's backends why a
// handler failed. A Nack carries no error, so without it a dead letter written
// after Nacks records only "message nacked" and [ErrPermanent] cannot be
// expressed on the Watermill face. With it, when the handler returns an error,
// the error's text is recorded in the consumed message's metadata under
// [MetadataReason] (it becomes the dead letter's reason), and an error wrapping
// [ErrPermanent] also sets [MetadataPermanent], so the message goes to the
// dead-letter topic at once instead of being redelivered. An error made by
// [RetryAfter] also sets [MetadataRetryAfter], so that the Nack waits as the
// byte face's error does.
//
// An error whose Error method panics (a typed nil pointer) is recorded as a
// reason that says so, instead of ending the router's goroutine in a panic.
// A handler that calls runtime.Goexit (as t.FailNow does in a test) has its
// message nacked: Watermill's router nacks after a panic but neither acks nor
// nacks after a Goexit, which would leave the message out, unsettled, until
// the subscriber closes. A panic passes through unchanged.
//
// The metadata is changed on the consumed message only, never on the stored
// one. Add it to the router, outside middleware that swallows errors:
//
//	router.AddMiddleware(relay.NackReason, middleware.Recoverer)
func NackReason(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		returned := false
		defer func() {
			if returned {
				return
			}
			if v := recover(); v != nil {
				panic(v) // raised again at once, so the stack still shows where it came from
			}
			msg.Nack() // runtime.Goexit: recover returns nil
		}()
		produced, err := h(msg)
		returned = true
		if err != nil {
			msg.Metadata.Set(MetadataReason, errorText(err))
			if errors.Is(err, ErrPermanent) {
				msg.Metadata.Set(MetadataPermanent, "true")
			}
			if d, ok := RetryAfterDelay(err); ok {
				msg.Metadata.Set(MetadataRetryAfter, d.String())
			}
		}
		return produced, err
	}
}

// errorText returns err.Error(), or, when that panics, a text that says so.
func errorText(err error) (text string) {
	defer func() {
		if v := recover(); v != nil {
			text = fmt.Sprintf("handler panic: the %T returned by the handler panics in Error: %v", err, v)
		}
	}()
	return err.Error()
}
