package benchmarks

// Impls returns every implementation in table order: per system, relay's
// two faces, the peer, the raw client.
func Impls() []Impl {
	var all []Impl
	all = append(all, memoryImpls()...)
	all = append(all, redisImpls()...)
	all = append(all, natsImpls()...)
	return all
}
