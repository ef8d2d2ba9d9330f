package schedule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/workload"
)

// serve answers one request; every request that carries a reply subject
// gets an answer, whatever happened.
func (s *Service) serve(ctx context.Context, msg *nats.Msg) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	ctx = events.ExtractRequestContext(ctx, msg.Header)
	ctx, span := s.tracer.Start(ctx, "request backup", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.destination.name", msg.Subject),
		))
	defer span.End()

	reply := s.handle(ctx, msg.Data)
	span.SetAttributes(attribute.String("freezeframe.backup_id", reply.BackupID))
	if reply.Error != "" {
		span.SetStatus(codes.Error, reply.Error)
	}
	if msg.Reply == "" {
		s.log.WarnContext(ctx, "backup request without a reply subject; nobody hears the answer", "backup_id", reply.BackupID, "error", reply.Error)
		return
	}
	body, err := json.Marshal(reply)
	if err != nil { // two strings: cannot happen, but never leave a client without an answer
		body = []byte(`{"error":"encode reply"}`)
	}
	if err := msg.Respond(body); err != nil {
		s.log.WarnContext(ctx, "reply to backup request", "backup_id", reply.BackupID, "err", err)
	}
}

// handle checks one request and publishes what follows from it.
func (s *Service) handle(ctx context.Context, data []byte) events.BackupRequestReply {
	var req events.BackupRequested
	if err := json.Unmarshal(data, &req); err != nil {
		s.log.WarnContext(ctx, "refusing undecodable backup request", "err", err)
		return events.BackupRequestReply{Error: fmt.Sprintf("invalid request: %v", err)}
	}
	reply := events.BackupRequestReply{BackupID: req.BackupID}
	log := s.log.With("backup_id", req.BackupID, "workload", req.Workload.String())

	blueprint, err := s.admit(ctx, &req)
	if events.IsPermanent(err) {
		log.WarnContext(ctx, "refusing backup request", "reason", err)
		s.refuse(ctx, &req, err)
		reply.Error = err.Error()
		return reply
	}
	if err != nil {
		log.WarnContext(ctx, "cannot check backup request now", "err", err)
		reply.Error = fmt.Sprintf("%v (nothing was recorded: retry with the same backup id)", err)
		reply.Retryable = true
		return reply
	}

	_, duplicate, err := s.pub.Publish(ctx, &req)
	if err != nil {
		log.WarnContext(ctx, "record backup request", "err", err)
		reply.Error = fmt.Sprintf("record request: %v (retry with the same backup id)", err)
		reply.Retryable = true
		return reply
	}
	if duplicate {
		log.InfoContext(ctx, "backup request repeated; already recorded")
		return reply
	}
	log.InfoContext(ctx, "backup requested", "blueprint", blueprint, "requested_by", req.RequestedBy)
	return reply
}

// admit decides whether req may start a backup, and names its blueprint. It
// canonicalises req on the way (the workload kind, the requester). An
// events.Permanent error is a refusal; any other error leaves the question
// open.
func (s *Service) admit(ctx context.Context, req *events.BackupRequested) (blueprint string, err error) {
	// "sts" and "deploy" validate, but subjects need the one spelling.
	if kind, err := events.NormalizeKind(req.Workload.Kind); err == nil {
		req.Workload.Kind = kind
	}
	if req.RequestedBy == "" {
		req.RequestedBy = "api"
	}
	if err := req.Validate(); err != nil {
		// One line: the reason ends up in event tables and CLI output.
		return "", events.Permanent(fmt.Errorf("invalid request: %s", strings.ReplaceAll(err.Error(), "\n", "; ")))
	}
	if req.Workload.Cluster != s.cfg.Cluster {
		return "", events.Permanent(fmt.Errorf("invalid request: cluster %q: this scheduler serves cluster %q", req.Workload.Cluster, s.cfg.Cluster))
	}
	annotations, err := s.workloads.Annotations(ctx, req.Workload)
	if errors.Is(err, workload.ErrNotFound) {
		return "", events.Permanent(err)
	}
	if err != nil {
		return "", fmt.Errorf("check workload: %w", err)
	}
	blueprint = blueprintOf(req, annotations)
	if blueprint == "" {
		return "", events.Permanent(fmt.Errorf("%s %s/%s has no blueprint: annotate it with %s=<blueprint> or name one in the request",
			req.Workload.Kind, req.Workload.Namespace, req.Workload.Name, AnnotationKanisterBlueprint))
	}
	return blueprint, nil
}

// refuse publishes the BackupFailed that ends a refused backup, so that a
// client waiting on the backup id sees the end instead of silence. A request
// that does not name a valid backup of a workload of this cluster has no
// backup to end: only its reply says why.
func (s *Service) refuse(ctx context.Context, req *events.BackupRequested, reason error) {
	if events.ValidateBackupID(req.BackupID) != nil || req.Workload.Validate() != nil || req.Workload.Cluster != s.cfg.Cluster {
		return
	}
	_, _, err := s.pub.Publish(ctx, &events.BackupFailed{
		BackupRef:     req.BackupRef,
		Step:          events.StepRequest,
		Reason:        reason.Error(),
		ResumePending: false,
	})
	if err != nil {
		s.log.ErrorContext(ctx, "publish refusal of backup request", "backup_id", req.BackupID, "err", err)
	}
}
