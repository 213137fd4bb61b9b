package relay

import "errors"

// Sentinel errors shared by every backend. Backends wrap them with the operation
// and the name involved; match them with [errors.Is].
var (
	// ErrClosed is returned by Publish, Subscribe and the Watermill faces when the
	// broker, publisher or subscriber has been closed.
	ErrClosed = errors.New("relay: closed")

	// ErrInvalidTopic is returned when a topic breaks the rule of [ValidateTopic].
	ErrInvalidTopic = errors.New("relay: invalid topic")

	// ErrNilHandler is returned by Subscribe when the handler is nil.
	ErrNilHandler = errors.New("relay: nil handler")

	// ErrPayloadTooLarge is returned by Publish, before anything is sent, when a
	// payload is larger than the backend accepts (for NATS the server's
	// max_payload, 1 MiB by default).
	ErrPayloadTooLarge = errors.New("relay: payload too large")

	// ErrInvalidMetadata is returned by a Watermill Publisher when a message's
	// UUID or metadata cannot be carried by the backend's wire format (for
	// NATS: keys that are not valid header names or start with "Nats-", and
	// values with line breaks or leading or trailing white space, which NATS
	// headers would change).
	ErrInvalidMetadata = errors.New("relay: invalid metadata")

	// ErrInvalidOption is returned by constructors when an option value is out of
	// range (for example a negative max deliver or a zero ack wait) or a required
	// argument is nil.
	ErrInvalidOption = errors.New("relay: invalid option")

	// ErrNilContext is returned by Publish (both faces, every backend) and by
	// any other call that takes a context when it is given a nil
	// context.Context, before anything is sent: pass context.Background() or
	// context.TODO() instead.
	ErrNilContext = errors.New("relay: nil context")

	// ErrPermanent is wrapped by a handler's error to say that retrying cannot
	// help: the message goes to the dead-letter topic at once, with no further
	// delivery attempt. Wrap it with fmt.Errorf("...: %w", relay.ErrPermanent) or
	// [Permanent].
	ErrPermanent = errors.New("relay: permanent failure")
)

// Permanent wraps err so that it matches [ErrPermanent] as well as err. It
// returns nil when err is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

type permanentError struct{ err error }

// Error implements error.
func (p permanentError) Error() string { return p.err.Error() }

// Unwrap serves the errors package: it matches both the cause and [ErrPermanent].
func (p permanentError) Unwrap() []error { return []error{p.err, ErrPermanent} }
