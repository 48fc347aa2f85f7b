package nflog

import "errors"

var (
	errTruncated  = errors.New("truncated nflog message")
	errAttribute  = errors.New("malformed nflog attribute")
	errNotPacket  = errors.New("not an nflog packet message")
	errNoGroups   = errors.New("no nflog group to bind")
	errGroupTwice = errors.New("nflog group given twice")
	errGroupHeld  = errors.New("nflog group is bound by another socket")
	errClosed     = errors.New("nflog listener is closed")
	errNoAnswer   = errors.New("no answer from nfnetlink_log")
)
