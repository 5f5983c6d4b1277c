# GitHub Actions deploys through OIDC: no stored AWS keys. The role trusts only deploy jobs of
# var.github_repository that run in the GitHub environment var.github_environment (default: the
# Terraform environment's name), and may do only what the deploy does: push images to the two
# repositories, register task definitions, update and watch the two services, pass the three
# ECS roles to ECS, and read what scripts/verify-deployment.sh checks afterwards.
#
# The OIDC provider is account-wide (one per account for token.actions.githubusercontent.com,
# shared by every repository): ../account creates it once, protected from destroy, and this
# stack only looks it up, so destroying one environment never cuts every other repository off.

locals {
  github_oidc_provider_arn = coalesce(
    var.github_oidc_provider_arn,
    "arn:${local.partition}:iam::${local.account_id}:oidc-provider/token.actions.githubusercontent.com",
  )
  # Namespaced, so two environments (or an unrelated role) never collide on one name. An
  # existing role is adopted only on purpose: name it and `terraform import` it (README.md).
  github_actions_role_name = coalesce(var.github_actions_role_name, "${var.project}-github-actions-${var.environment}")
  github_environment       = coalesce(var.github_environment, var.environment)
}

# Fails the plan, naming the ARN, when the provider does not exist yet (apply ../account first).
data "aws_iam_openid_connect_provider" "github" {
  arn = local.github_oidc_provider_arn
}

data "aws_iam_policy_document" "github_assume" {
  #checkov:skip=CKV_AWS_358: the subject is repo:<var.github_repository>:environment:<name>; checkov cannot read the variable, which its validation holds to owner/name without wildcards.
  statement {
    sid     = "GitHubActionsOidc"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [data.aws_iam_openid_connect_provider.github.arn]
    }

    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:aud"
      values   = ["sts.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:sub"
      # A job with `environment:` gets this subject, never the `ref:` form; the environment's
      # deployment-branch rule (and, for prod, its required reviewers) decides who may run it.
      values = ["repo:${var.github_repository}:environment:${local.github_environment}"]
    }
  }
}

resource "aws_iam_role" "github_actions" {
  name                 = local.github_actions_role_name
  description          = "GitHub Actions (${var.github_repository}, environment ${local.github_environment}) deploys Ghost Engine ${var.environment}"
  assume_role_policy   = data.aws_iam_policy_document.github_assume.json
  max_session_duration = 3600
}

data "aws_iam_policy_document" "github_deploy" {
  #checkov:skip=CKV_AWS_356: ecr:GetAuthorizationToken, ecs Describe/RegisterTaskDefinition and cloudwatch:GetMetricStatistics support no resource ARNs; every other statement names its ARNs.
  #checkov:skip=CKV_AWS_111: as above: the only "*" resources are actions that cannot be scoped.
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # Not resource-scoped by AWS.
  }

  statement {
    sid = "EcrPushAndCheck"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:InitiateLayerUpload",
      "ecr:UploadLayerPart",
      "ecr:CompleteLayerUpload",
      "ecr:PutImage",
      "ecr:BatchGetImage",
      "ecr:DescribeImages",
      "ecr:DescribeRepositories", # deploy.sh and deploy.yml read the repository URI / tag mutability
    ]
    resources = [for repo in aws_ecr_repository.this : repo.arn]
  }

  statement {
    sid       = "EcsTaskDefinitions"
    actions   = ["ecs:DescribeTaskDefinition", "ecs:RegisterTaskDefinition"]
    resources = ["*"] # Not resource-scoped by AWS.
  }

  # deploy.sh copies the current revision's tags into the new one; tagging on create needs
  # ecs:TagResource, allowed here only as part of RegisterTaskDefinition of our two families.
  statement {
    sid       = "EcsTagNewRevisions"
    actions   = ["ecs:TagResource"]
    resources = [for family in local.qualified_names : "arn:${local.partition}:ecs:${var.region}:${local.account_id}:task-definition/${family}:*"]

    condition {
      test     = "StringEquals"
      variable = "ecs:CreateAction"
      values   = ["RegisterTaskDefinition"]
    }
  }

  statement {
    sid       = "EcsServices"
    actions   = ["ecs:UpdateService", "ecs:DescribeServices"]
    resources = [for service in aws_ecs_service.this : service.id] # The service ARN.
  }

  # scripts/verify-deployment.sh runs after deploy.sh (without --restart). Besides the two ECS
  # reads above it reads the smoke test's job row, both log groups (trace.sh --cloudwatch and
  # their retention), the JobSucceeded metric and the alarms: read actions only, on those.
  statement {
    sid       = "VerifyJobRow"
    actions   = ["dynamodb:GetItem"]
    resources = [aws_dynamodb_table.this.arn]
  }

  statement {
    sid     = "VerifyLogLines"
    actions = ["logs:FilterLogEvents"]
    # Each group's ARN without and with the ":*" suffix (log-group actions are matched on both forms).
    resources = flatten([for group in aws_cloudwatch_log_group.this : [group.arn, "${group.arn}:*"]])
  }

  statement {
    sid       = "VerifyLogRetention"
    actions   = ["logs:DescribeLogGroups"]
    resources = ["arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:*"] # A listing call.
  }

  statement {
    sid       = "VerifyMetric"
    actions   = ["cloudwatch:GetMetricStatistics"]
    resources = ["*"] # Not resource-scoped by AWS.
  }

  statement {
    sid     = "VerifyAlarms"
    actions = ["cloudwatch:DescribeAlarms"]
    resources = concat([aws_cloudwatch_metric_alarm.alb_5xx.arn, aws_cloudwatch_metric_alarm.job_failed.arn],
    [for alarm in aws_cloudwatch_metric_alarm.running_tasks : alarm.arn])
  }

  statement {
    sid       = "PassEcsRoles"
    actions   = ["iam:PassRole"]
    resources = concat([aws_iam_role.execution.arn], [for role in aws_iam_role.task : role.arn])

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "github_deploy" {
  name   = "deploy"
  role   = aws_iam_role.github_actions.id
  policy = data.aws_iam_policy_document.github_deploy.json
}
