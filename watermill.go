package relay

import (
	"errors"

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
// The metadata is changed on the consumed message only, never on the stored
// one. Add it to the router, outside middleware that swallows errors:
//
//	router.AddMiddleware(relay.NackReason, middleware.Recoverer)
func NackReason(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		produced, err := h(msg)
		if err != nil {
			msg.Metadata.Set(MetadataReason, err.Error())
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
