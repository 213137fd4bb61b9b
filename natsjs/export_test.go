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
