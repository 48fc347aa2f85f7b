// Package fuzztest holds what the fuzz targets of the kernel decoders
// (nlwire, ctnl, nfacct, nftables) check beyond "does not panic": that
// decoding an input allocates in proportion to the bytes it has, never to
// a length one of its fields claims.
package fuzztest
