package relay

// Metadata keys that backends set on a dead letter (visible on the Watermill face
// as message metadata). The reason and topic keys are those of Watermill's
// PoisonQueue middleware, so tools written for Watermill's poison queues read our
// dead letters too.
const (
	// MetadataSourceTopic holds the topic the message was consumed from.
	MetadataSourceTopic = "topic_poisoned"
	// MetadataReason holds the text of the last error the handler returned (or
	// the decode error for an entry that could not be read).
	MetadataReason = "reason_poisoned"
	// MetadataSourceID holds the backend's id of the source message: the Redis
	// entry id, or the JetStream stream sequence, or the memory sequence.
	MetadataSourceID = "relay_source_id"
	// MetadataAttempts holds the number of deliveries made, in decimal.
	MetadataAttempts = "relay_attempts"
)
