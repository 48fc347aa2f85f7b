// Package config holds the exporter's settings: its flags (AddFlags, in
// flags.go), the YAML configuration file given by --config.file (Load and
// Parse, in file.go and yaml.go), and the two merged and checked once
// (Flags.Settings, in settings.go), for --config.check and a start alike;
// flags given on the command line win over the file. A reload (SIGHUP, POST
// /-/reload) reads the file again with the same code (Flags.Reload and
// Reloader, in reload.go) and changes what the file sets: the networks,
// ports and filters; the flags stay as they were at start.
//
// The file names networks for the src_net and dst_net keys, lists the ports
// the port keys read as, holds the accept and deny rules of the conntrack
// flow filter, and gives defaults for the --conntrack flags. Decoding is
// strict: an unknown field is an error, and every error names the file and
// the field, like
//
//	config.yml: networks.lan[1]: "10.0.0.0/33" is not a CIDR
//
// and, for the structure (a field unknown, given twice or of the wrong
// shape), its line:
//
//	config.yml: line 3: unexpected structure: unknown field "colour" in filters.deny[0]; valid fields are src, dst, proto, sport, dport, zone, mark
//
// The YAML library parses the file into nodes, from which yaml.go reads the
// file's shapes and words those errors; file.go checks the values. Parse
// and Load validate everything and build the flow package's types, so a
// File they return is ready to use.
//
// # Limits
//
// Reading takes time and memory linear in the file, whatever it holds. The
// file must be a regular file of at most MaxConfigFileSize bytes (readFile,
// in file.go: a named pipe, a directory or a device is refused unread), and
// it may stand for at most MaxConfigNodes nodes once every alias is
// replaced by a copy of its anchor, which expand.go counts in one walk
// before anything is read; a map merged by many others is listed once.
// --web.config.file is held to the same limits before exporter-toolkit
// reads it (webconfig.go). An error quotes at most 40 bytes of a value,
// then its length (quote, in errors.go).
package config
