package delivery

import (
	"fmt"
	"time"

	"github.com/go-relay/relay"
)

// DueTime returns the due time that md carries under
// relay.MetadataDelayedUntil, and whether it carries one (an empty value is
// none). A value that is not an RFC 3339 time (fractions of a second
// accepted) is an error wrapping relay.ErrInvalidDelay.
func DueTime(md map[string]string) (time.Time, bool, error) {
	v := md[relay.MetadataDelayedUntil]
	if v == "" {
		return time.Time{}, false, nil
	}
	at, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("%w: metadata %s %q is not an RFC 3339 time", relay.ErrInvalidDelay, relay.MetadataDelayedUntil, v)
	}
	return at, true, nil
}

// CheckDue returns an error wrapping relay.ErrInvalidDelay when at is the zero
// time or more than maxDelay after now.
func CheckDue(at, now time.Time, maxDelay time.Duration) error {
	switch {
	case at.IsZero():
		return fmt.Errorf("%w: zero due time", relay.ErrInvalidDelay)
	case at.Sub(now) > maxDelay:
		return fmt.Errorf("%w: due time %s is %v ahead, more than the maximum %v (WithMaxDelay)",
			relay.ErrInvalidDelay, at.Format(time.RFC3339Nano), at.Sub(now).Round(time.Millisecond), maxDelay)
	}
	return nil
}
