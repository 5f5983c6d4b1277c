# ECS roles. The execution role lets ECS pull the image, ship logs and read the services' tokens
# (secrets.tf); the task roles are what
# the service code runs as. The orchestrator gets exactly the DynamoDB calls store code makes
# (tests/ compares this list with the calls it records); the worker calls no AWS API at all.

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    sid     = "EcsTasksAssume"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    # Confused-deputy guard: only ECS acting for this account may assume the roles.
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "execution" {
  name               = "${var.project}-ecs-execution-${var.environment}"
  description        = "ECS pulls Ghost Engine images and writes their logs"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

# ECS reads the tokens for the containers (task-definition `secrets`): only those secrets, only
# their value. The code never calls Secrets Manager, so the task roles get nothing of it.
data "aws_iam_policy_document" "execution_secrets" {
  statement {
    sid       = "ReadServiceTokens"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = concat([aws_secretsmanager_secret.worker_token.arn], aws_secretsmanager_secret.api_token[*].arn)
  }
}

resource "aws_iam_role_policy" "execution_secrets" {
  name   = "service-tokens"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution_secrets.json
}

resource "aws_iam_role" "task" {
  for_each = local.services

  name               = "${var.project}-${each.key}-task-${var.environment}"
  description        = "Runtime identity of the Ghost Engine ${each.key}"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "orchestrator_jobs_table" {
  statement {
    sid       = "JobItems"
    actions   = ["dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.this.arn]
  }

  statement {
    sid       = "ActiveJobsIndex"
    actions   = ["dynamodb:Query"]
    resources = ["${aws_dynamodb_table.this.arn}/index/${local.active_index}"]
  }

  # GET /jobs: a Query per list shard on one of these, then BatchGetItem (above) of the page's jobs.
  statement {
    sid     = "JobListIndexes"
    actions = ["dynamodb:Query"]
    resources = [
      "${aws_dynamodb_table.this.arn}/index/${local.created_index}",
      "${aws_dynamodb_table.this.arn}/index/${local.state_index}",
    ]
  }
}

resource "aws_iam_role_policy" "orchestrator_jobs_table" {
  name   = "jobs-table"
  role   = aws_iam_role.task["orchestrator"].id
  policy = data.aws_iam_policy_document.orchestrator_jobs_table.json
}
