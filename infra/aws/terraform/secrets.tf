# The services' shared secrets, generated once in Secrets Manager and handed to the containers
# by ECS (task-definition `secrets`, read with the execution role): never in a task definition,
# a plan or the state.
#
# WORKER_TOKEN: the worker answers /process only with `Authorization: Bearer <WORKER_TOKEN>`,
# which the orchestrator sends; both task definitions get it. API_TOKEN (api_token_enabled):
# every public API call but /healthz, /readyz and /openapi.json needs it.
#
# Each value comes from an ephemeral random password and is written with a write-only argument,
# so Terraform never stores it; it is written only when `*_version` changes. To rotate, raise
# the version and apply, then redeploy both services (tasks read the secret when they start;
# calls between an old orchestrator and a new worker fail with 401 while the two roll).

locals {
  token_versions = { worker = 1, api = 1 }
}

ephemeral "aws_secretsmanager_random_password" "worker_token" {
  password_length     = 48
  exclude_punctuation = true
}

resource "aws_secretsmanager_secret" "worker_token" {
  #checkov:skip=CKV_AWS_149: the AWS-managed key aws/secretsmanager encrypts it; a customer key would add kms:Decrypt to the execution role and cost without a second reader to separate.
  #checkov:skip=CKV2_AWS_57: rotation is a version bump and a redeploy of both services (above); the services do not accept two tokens at once, which automatic rotation needs.
  name                    = "${var.project}-worker-token-${var.environment}"
  description             = "WORKER_TOKEN: the orchestrator's bearer token for the worker's /process"
  recovery_window_in_days = var.deletion_protection_enabled ? 30 : 0
}

resource "aws_secretsmanager_secret_version" "worker_token" {
  secret_id                = aws_secretsmanager_secret.worker_token.id
  secret_string_wo         = ephemeral.aws_secretsmanager_random_password.worker_token.random_password
  secret_string_wo_version = local.token_versions.worker
}

ephemeral "aws_secretsmanager_random_password" "api_token" {
  count = var.api_token_enabled ? 1 : 0

  password_length     = 48
  exclude_punctuation = true
}

resource "aws_secretsmanager_secret" "api_token" {
  #checkov:skip=CKV_AWS_149: as the worker token: the AWS-managed key encrypts it.
  #checkov:skip=CKV2_AWS_57: as the worker token: rotation is a version bump and a redeploy; clients then need the new value.
  count = var.api_token_enabled ? 1 : 0

  name                    = "${var.project}-api-token-${var.environment}"
  description             = "API_TOKEN: the bearer token the public API requires of its clients"
  recovery_window_in_days = var.deletion_protection_enabled ? 30 : 0
}

resource "aws_secretsmanager_secret_version" "api_token" {
  count = var.api_token_enabled ? 1 : 0

  secret_id                = aws_secretsmanager_secret.api_token[0].id
  secret_string_wo         = ephemeral.aws_secretsmanager_random_password.api_token[0].random_password
  secret_string_wo_version = local.token_versions.api
}
