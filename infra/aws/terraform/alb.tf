# Public Application Load Balancer in front of the orchestrator.

resource "aws_lb" "this" {
  #checkov:skip=CKV_AWS_91: access logs need an S3 bucket and its policy; request logs are in the orchestrator's log group.
  #checkov:skip=CKV2_AWS_28: no WAF for a dev environment; add aws_wafv2_web_acl_association when the API is exposed widely.
  name                       = "${var.project}-alb-${var.environment}"
  internal                   = false
  load_balancer_type         = "application"
  security_groups            = [aws_security_group.alb.id]
  subnets                    = local.public_subnet_ids
  enable_deletion_protection = var.deletion_protection_enabled

  # Request smuggling: the ALB drops header fields that are not valid HTTP, and refuses any
  # request RFC 7230 calls ambiguous (strictest) instead of forwarding it. The services do the
  # same checks themselves (httphead.py), since they are also reached without the ALB.
  drop_invalid_header_fields = true
  desync_mitigation_mode     = "strictest"
}

resource "aws_lb_target_group" "orchestrator" {
  #checkov:skip=CKV_AWS_378: TLS ends at the ALB; ALB-to-task HTTP stays inside the VPC, allowed only by the security groups.
  name        = "${var.project}-orch-${var.environment}"
  port        = local.services.orchestrator.port
  protocol    = "HTTP"
  target_type = "ip" # Fargate tasks register by IP (awsvpc).
  vpc_id      = local.vpc_id

  # The drain order on a rollout or scale-in: ECS deregisters the task here, waits this long,
  # and only then sends SIGTERM, after which the orchestrator still has its stopTimeout (30 s)
  # to finish in-flight requests. So the delay only has to cover the ALB noticing the target
  # is draining (a few seconds); at 30 s, on top of stopTimeout, every task replaced took about
  # a minute for nothing.
  deregistration_delay = 15

  # Readiness, not liveness: a task whose background work is failing (e.g. no store access)
  # gets no traffic, while ECS's container healthCheck (/healthz) keeps it alive to recover.
  health_check {
    path                = "/readyz"
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

resource "aws_lb_listener" "http" {
  #checkov:skip=CKV_AWS_2: plain HTTP only while certificate_arn is null; with a certificate this listener redirects to HTTPS.
  #checkov:skip=CKV_AWS_103: TLS policy applies to the HTTPS listener, created when certificate_arn is set.
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type             = var.certificate_arn == null ? "forward" : "redirect"
    target_group_arn = var.certificate_arn == null ? aws_lb_target_group.orchestrator.arn : null

    dynamic "redirect" {
      for_each = var.certificate_arn == null ? [] : [1]

      content {
        port        = "443"
        protocol    = "HTTPS"
        status_code = "HTTP_301"
      }
    }
  }
}

resource "aws_lb_listener" "https" {
  count = var.certificate_arn == null ? 0 : 1

  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.orchestrator.arn
  }
}

# The public name of the API: with a certificate, https://<domain_name> is the only URL TLS can
# verify (no certificate covers the ALB's amazonaws.com name).
resource "aws_route53_record" "api" {
  count = var.domain_name == null ? 0 : 1

  zone_id = var.route53_zone_id
  name    = var.domain_name
  type    = "A"

  alias {
    name                   = aws_lb.this.dns_name
    zone_id                = aws_lb.this.zone_id
    evaluate_target_health = true
  }
}
