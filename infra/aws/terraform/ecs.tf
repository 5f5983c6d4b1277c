# ECS cluster, one Fargate task definition and one service per component.
#
# One owner per field. Terraform owns everything in a task definition but the image: a change
# here (environment, CPU/memory, roles, logging) registers a new revision of the family. The
# deploy pipeline owns the image and which revision runs: scripts/deploy.sh starts from the
# family's latest ACTIVE revision (Terraform's, or its own copy of it), swaps only the image, and
# moves the services, so a Terraform change is live after the next deploy (run
# `scripts/deploy.sh <running sha>` to apply it at once). The services therefore ignore
# `task_definition`. moto and some AWS accounts never return `availability_zone_rebalancing`,
# which would otherwise show a diff on every plan.

resource "aws_ecs_cluster" "this" {
  name = local.cluster_name

  # Container Insights publishes RunningTaskCount, which the running-tasks alarms watch.
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_ecs_task_definition" "this" {
  for_each = local.services

  family                   = local.qualified_names[each.key]
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = tostring(each.value.cpu)
  memory                   = tostring(each.value.memory)
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task[each.key].arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  container_definitions = jsonencode([
    {
      name      = each.key
      image     = "${aws_ecr_repository.this[each.key].repository_url}:${var.image_tag}"
      essential = true
      command   = ["python", "${each.key}.py"]

      portMappings = [
        {
          containerPort = each.value.port
          hostPort      = each.value.port
          protocol      = "tcp"
        },
      ]

      environment = [for name in sort(keys(each.value.environment)) : {
        name  = name
        value = each.value.environment[name]
      }]

      # Tokens come from Secrets Manager (secrets.tf), never as plaintext environment.
      secrets = [for name in sort(keys(each.value.secrets)) : {
        name      = name
        valueFrom = each.value.secrets[name]
      }]

      # Marks a task unhealthy when its own /healthz stops answering (ECS replaces it, and
      # Cloud Map stops answering with a worker that is not healthy). The image's one health
      # command, as in the Dockerfile's HEALTHCHECK: it follows the PORT set above.
      healthCheck = {
        command     = ["CMD", "python", "healthcheck.py"]
        interval    = 15
        timeout     = 5
        retries     = 3
        startPeriod = 10
      }

      # SIGTERM, then this long before SIGKILL (main.tf: the worker's includes its accept delay).
      stopTimeout            = each.value.stop_timeout
      readonlyRootFilesystem = true

      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.this[each.key].name
          awslogs-region        = var.region
          awslogs-stream-prefix = each.key
          # Explicit, not the account default. non-blocking: a write to stdout never waits for
          # CloudWatch Logs, so a throttled or unreachable Logs API cannot stall requests; the
          # price is that lines written while this buffer is full (minutes of output at our
          # rates) are dropped, EMF metric lines included. blocking would keep every line and
          # stall the service instead.
          mode              = "non-blocking"
          "max-buffer-size" = "25m"
        }
      }
    },
  ])
}

resource "aws_ecs_service" "this" {
  for_each = local.services

  name            = each.key
  cluster         = aws_ecs_cluster.this.id
  task_definition = aws_ecs_task_definition.this[each.key].arn
  desired_count   = each.value.desired_count
  launch_type     = "FARGATE"
  propagate_tags  = "SERVICE"

  # Rolling deploys start new tasks before stopping old ones; a deployment whose tasks keep
  # failing is stopped and rolled back to the last working revision.
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  # No health_check_grace_period_seconds: the stdlib services answer /healthz within a second of
  # starting, well inside the target group's 3 x 15 s unhealthy window.

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = local.private_subnet_ids
    security_groups  = [aws_security_group.service[each.key].id]
    assign_public_ip = false
  }

  dynamic "load_balancer" {
    for_each = each.key == "orchestrator" ? [aws_lb_target_group.orchestrator.arn] : []

    content {
      target_group_arn = load_balancer.value
      container_name   = each.key
      container_port   = each.value.port
    }
  }

  dynamic "service_registries" {
    for_each = each.key == "worker" ? [aws_service_discovery_service.this.arn] : []

    content {
      registry_arn = service_registries.value
    }
  }

  # The pipeline owns task-definition revisions, and auto scaling (autoscaling.tf) the task
  # counts after the first apply: a re-apply must not reset either.
  lifecycle {
    ignore_changes = [task_definition, desired_count, availability_zone_rebalancing]
  }

  # The target group must be attached to the ALB before a service can register into it, and a
  # task can start only once its secrets have a value. With a certificate, port 80 only
  # redirects: the HTTPS listener is what attaches the target group, so both are waited for.
  depends_on = [
    aws_lb_listener.http,
    aws_lb_listener.https,
    aws_secretsmanager_secret_version.worker_token,
    aws_secretsmanager_secret_version.api_token,
  ]
}
