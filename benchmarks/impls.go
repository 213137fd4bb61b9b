package benchmarks

// Impls returns every implementation in table order: per system, relay's
// two faces, the peer, the raw client, and the raw client writing relay's
// wire format (none on the memory system).
func Impls() []Impl {
	var all []Impl
	all = append(all, memoryImpls()...)
	all = append(all, redisImpls()...)
	all = append(all, natsImpls()...)
	return all
}
