# One log group per service, named as the awslogs driver in ecs.tf expects.

resource "aws_cloudwatch_log_group" "this" {
  #checkov:skip=CKV_AWS_158: CloudWatch Logs encrypts at rest by default; a customer-managed key is not required here.
  #checkov:skip=CKV_AWS_338: retention is var.log_retention_days (default 14, as specified), not a year.
  for_each = local.services

  name              = "/ecs/${local.qualified_names[each.key]}"
  retention_in_days = var.log_retention_days
}
