package notaryv1

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/trustgate-dev/trustgate/internal/verify"
)

// vError carries a human message and the verify sentinel it stands for, so
// messages read "tag v1 of x is not signed ..." without a trailing
// ": not trusted", while errors.Is still finds the sentinel.
type vError struct {
	msg   string
	kind  error // verify.ErrUntrusted or verify.ErrUnavailable
	cause error
}

func (e *vError) Error() string {
	if e.cause != nil {
		return e.msg + ": " + e.cause.Error()
	}
	return e.msg
}

func (e *vError) Unwrap() []error {
	if e.cause != nil {
		return []error{e.kind, e.cause}
	}
	return []error{e.kind}
}

func untrusted(cause error, format string, args ...any) error {
	return &vError{msg: fmt.Sprintf(format, args...), kind: verify.ErrUntrusted, cause: cause}
}

func unavailable(cause error, format string, args ...any) error {
	return &vError{msg: fmt.Sprintf(format, args...), kind: verify.ErrUnavailable, cause: cause}
}

// errTimedOut replaces "context deadline exceeded" in messages.
var errTimedOut = errors.New("timed out")

// transportError classifies a failed HTTP exchange: always "unavailable",
// with "timed out" when a deadline (ours or the caller's) expired.
func transportError(ctx context.Context, err error, format string, args ...any) error {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return unavailable(errTimedOut, format, args...)
	}
	if errors.Is(err, context.Canceled) {
		return unavailable(context.Canceled, format, args...)
	}
	return unavailable(err, format, args...)
}
