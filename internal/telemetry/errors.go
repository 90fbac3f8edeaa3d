package telemetry

import (
	"errors"
	"strconv"
)

// Reason is the machine-readable cause of a refused payload. The server
// counts rejections by Reason (label `reason` of
// loadwatch_ingest_rejected_total), so the set is small and stable.
type Reason string

// The reasons a payload or identifier can be refused for.
const (
	ReasonMalformedJSON      Reason = "malformed_json"      // not JSON, or not an object
	ReasonUnsupportedVersion Reason = "unsupported_version" // "v" is not a version this build reads
	ReasonBadType            Reason = "bad_type"            // a field has the wrong JSON type (or is null)
	ReasonBadValue           Reason = "bad_value"           // a string field is not one of its allowed values
	ReasonOutOfRange         Reason = "out_of_range"        // a number outside its physical range
	ReasonNaNOrInf           Reason = "nan_or_inf"          // NaN or an infinite number
	ReasonNegativePower      Reason = "negative_power"      // active power below zero
	ReasonFutureTimestamp    Reason = "future_timestamp"    // ts further ahead of now than allowed
	ReasonBadTimestamp       Reason = "bad_timestamp"       // ts is not RFC 3339
	ReasonTooLarge           Reason = "too_large"           // payload or batch over its limit
	ReasonMissingField       Reason = "missing_field"       // a required field is absent
	ReasonBadDeviceID        Reason = "bad_device_id"       // device or agent id fails the charset/length rules
	ReasonBadTopic           Reason = "bad_topic"           // topic is not a loadwatch/v1 or Tasmota topic
)

// Error is a refused payload, topic or identifier. Reason is the machine
// reason; Field names the offending JSON field when there is one ("" when
// not), and Index the reading within a batch (-1 for a single reading or
// when not applicable). Err keeps the underlying cause, if any.
type Error struct {
	Reason Reason
	Field  string
	Index  int
	Err    error
}

func (e *Error) Error() string {
	s := "telemetry: " + string(e.Reason)
	if e.Field != "" {
		s += " (" + e.Field
		if e.Index >= 0 {
			s += " of reading " + strconv.Itoa(e.Index)
		}
		s += ")"
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Is lets errors.Is(err, telemetry.ErrOutOfRange) match any *Error with the
// same Reason, whatever its field.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Field == "" && t.Err == nil && t.Reason == e.Reason
}

// Sentinels for errors.Is; each matches every *Error with its Reason.
var (
	ErrMalformedJSON      = &Error{Reason: ReasonMalformedJSON, Index: -1}
	ErrUnsupportedVersion = &Error{Reason: ReasonUnsupportedVersion, Index: -1}
	ErrBadType            = &Error{Reason: ReasonBadType, Index: -1}
	ErrBadValue           = &Error{Reason: ReasonBadValue, Index: -1}
	ErrOutOfRange         = &Error{Reason: ReasonOutOfRange, Index: -1}
	ErrNaNOrInf           = &Error{Reason: ReasonNaNOrInf, Index: -1}
	ErrNegativePower      = &Error{Reason: ReasonNegativePower, Index: -1}
	ErrFutureTimestamp    = &Error{Reason: ReasonFutureTimestamp, Index: -1}
	ErrBadTimestamp       = &Error{Reason: ReasonBadTimestamp, Index: -1}
	ErrTooLarge           = &Error{Reason: ReasonTooLarge, Index: -1}
	ErrMissingField       = &Error{Reason: ReasonMissingField, Index: -1}
	ErrBadDeviceID        = &Error{Reason: ReasonBadDeviceID, Index: -1}
	ErrBadTopic           = &Error{Reason: ReasonBadTopic, Index: -1}
)

// ReasonOf returns the Reason of err if it is (or wraps) an *Error, and ""
// otherwise.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

func fieldErr(r Reason, field string, idx int) *Error {
	return &Error{Reason: r, Field: field, Index: idx}
}
