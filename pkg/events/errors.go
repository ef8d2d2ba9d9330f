package events

import "errors"

// PermanentError marks a handler failure that no retry can fix (invalid
// input, a workload that does not exist). The message is terminated with the
// error as reason instead of being redelivered.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err as a PermanentError; nil stays nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err (or anything it wraps) is permanent.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p) || errors.Is(err, ErrUndecodable) || errors.Is(err, ErrUnknownType) || errors.Is(err, ErrTooLarge)
}
