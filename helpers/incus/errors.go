package incus

import (
	"errors"
	"fmt"
	"net/http"
)

// Sentinels for errors.Is; *Error matches them by status code.
var (
	ErrNotFound  = errors.New("not found")
	ErrForbidden = errors.New("forbidden")
	ErrConflict  = errors.New("conflict")
)

// Error is a failed call: either the server answered with an error (StatusCode,
// Message), or the call did not get an answer at all (Err: connection refused,
// certificate not trusted, deadline).
type Error struct {
	Op         string // "GET /1.0/instances/x"
	Endpoint   string // where we talked to
	StatusCode int
	Message    string // Incus's own error text
	Err        error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("incus %s at %s: %v", e.Op, e.Endpoint, e.Err)
	}
	return fmt.Sprintf("incus %s at %s: %d %s: %s", e.Op, e.Endpoint, e.StatusCode, http.StatusText(e.StatusCode), e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Is maps status codes onto the sentinels.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrForbidden:
		return e.StatusCode == http.StatusForbidden || e.StatusCode == http.StatusUnauthorized
	case ErrConflict:
		return e.StatusCode == http.StatusConflict
	}
	return false
}

// OperationError is a background operation that ended in failure, with Incus's reason.
type OperationError struct {
	ID          string
	Description string
	Status      string
	Message     string
}

func (e *OperationError) Error() string {
	return fmt.Sprintf("incus operation %q (%s) ended %s: %s", e.Description, e.ID, e.Status, e.Message)
}
