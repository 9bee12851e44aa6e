package incus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Operation is a background task the server runs for us (create, start, exec, …).
type Operation struct {
	ID          string          `json:"id"`
	Description string          `json:"description"`
	Status      string          `json:"status"` // Running, Success, Failure, Cancelled
	StatusCode  int             `json:"status_code"`
	Err         string          `json:"err"`
	Metadata    json.RawMessage `json:"metadata"`
}

// async sends a call that answers with an operation and waits for it to end.
func (c *Client) async(ctx context.Context, method, path string, query url.Values, body any) (*Operation, error) {
	env, err := c.do(ctx, method, path, query, body, nil)
	if err != nil {
		return nil, err
	}
	if env.Type != "async" || env.Operation == "" {
		return nil, &Error{Op: method + " " + path, Endpoint: c.Endpoint, Err: fmt.Errorf("expected an async operation, got %q", env.Type)}
	}
	return c.Wait(ctx, env.Operation)
}

// Wait blocks until the operation ends or ctx is done. It long-polls in slices
// so a cancelled context is noticed quickly. A failed operation is an *OperationError.
//
// A slice that ends before the operation does is answered two ways, by
// incusd's version (cmd/incusd/operations.go, operationWaitGet): 6.0.x
// renders op.Wait's own error, an error envelope saying "context deadline
// exceeded" (error_code 500, under an HTTP 200 already sent); later ones
// render the operation as it stands (status "Running"). The error text
// cannot tell the wait's timeout from an operation that failed with it, so
// an error answer is checked against the operation's state.
func (c *Client) Wait(ctx context.Context, opURL string) (*Operation, error) {
	id := opURL[strings.LastIndex(opURL, "/")+1:]
	path := "/1.0/operations/" + url.PathEscape(id)
	for {
		var op Operation
		_, err := c.do(ctx, http.MethodGet, path+"/wait", url.Values{"timeout": {"5"}}, nil, &op)
		var ie *Error
		if err != nil && errors.As(err, &ie) && ie.Err == nil && ctx.Err() == nil {
			// The server answered with an error: is the operation still running?
			if _, gerr := c.do(ctx, http.MethodGet, path, nil, nil, &op); gerr == nil {
				err = nil
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("waiting for operation %s: %w", id, ctx.Err())
			}
			return nil, err
		}
		switch op.Status {
		case "Success":
			return &op, nil
		case "Failure", "Cancelled":
			return &op, &OperationError{ID: op.ID, Description: op.Description, Status: op.Status, Message: op.Err}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for operation %s (%s): %w", id, op.Description, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// IsOperationFailure reports whether err is a failed background operation.
func IsOperationFailure(err error) bool {
	var oe *OperationError
	return errors.As(err, &oe)
}
