// Package config reads the exporter's YAML configuration file, given by
// --config.file.
//
// The file names networks for the src_net and dst_net keys, lists the ports
// the port keys read as, holds the accept and deny rules of the conntrack
// flow filter, and gives defaults for the --conntrack flags. Decoding is
// strict: an unknown field is an error, and every error names the file and
// the field, like
//
//	config.yml: networks.lan[1]: "10.0.0.0/33" is not a CIDR
//
// Parse and Load validate everything and build the flow package's types, so
// a Config they return is ready to use.
package config
