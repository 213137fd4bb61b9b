package natsjs

// Internals the external tests compute with.
var (
	DeadLetterID      = deadLetterID
	DeadLetterHeaders = deadLetterHeaders
)

const (
	MaxHeaderBytes      = maxHeaderBytes
	MinDeadLetterReason = minDeadLetterReason
)

var SubjectMatches = subjectMatches

// Running is the number of subscriptions s keeps for Shutdown.
func (s *Subscriber) Running() int { return s.subs.Len() }
