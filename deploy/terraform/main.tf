# floodgate on AWS: an ALB (TLS ends there) in front of floodgate tasks on ECS Fargate, which share
# an ElastiCache for Redis cluster (cluster mode enabled).
#
#   clients --HTTPS--> ALB --HTTP:8080--> ECS tasks --TCP:6379--> ElastiCache (3 shards x 2 nodes)
#
# Security groups chain the three: only the ALB reaches the tasks, only the tasks reach Redis.

data "aws_region" "current" {}

# The ALB's subnets, for floodgate's trusted_proxies (unless given in trusted_proxy_cidrs).
data "aws_subnet" "alb" {
  for_each = length(var.trusted_proxy_cidrs) > 0 ? toset([]) : toset(var.public_subnet_ids)
  id       = each.value
}

locals {
  container_name = "floodgate"
  container_port = 8080
  redis_port     = 6379

  # One server thread per vCPU of the task. Left unset, floodgate would count the CPUs it sees,
  # which need not be the task's share.
  threads = max(1, floor(var.task_cpu / 1024))

  # The ALB connects to the tasks from its own addresses in its subnets: only those may name the
  # client in X-Forwarded-For. Nothing else can reach the tasks (aws_security_group.tasks).
  trusted_proxies = length(var.trusted_proxy_cidrs) > 0 ? var.trusted_proxy_cidrs : [
    for s in data.aws_subnet.alb : s.cidr_block
  ]

  # The configuration endpoint is a DNS name for the whole cluster: floodgate resolves it, asks
  # CLUSTER SLOTS and talks to each shard's primary directly. With in-transit encryption every
  # one of those connections is TLS (rediss-cluster://), verified against the system's CAs (the
  # image has ca-certificates; ElastiCache's certificates are from Amazon's public CA) and the
  # name of each node as CLUSTER SLOTS gives it (a DNS name on a TLS ElastiCache cluster).
  store_scheme = var.redis_transit_encryption ? "rediss-cluster" : "redis-cluster"
  store_url    = "${local.store_scheme}://${aws_elasticache_replication_group.redis.configuration_endpoint_address}:${local.redis_port}"

  # floodgate.yaml, as YAML. Check what a plan would deploy with
  #   terraform output -raw floodgate_config > f.yaml && floodgate validate f.yaml
  floodgate_config = yamlencode(merge(
    {
      listen          = "0.0.0.0:${local.container_port}"
      threads         = local.threads
      store           = local.store_url
      store_timeout   = var.store_timeout
      on_store_error  = var.on_store_error
      local_fallback  = { instances = var.min_count }
      trusted_proxies = local.trusted_proxies
      server = {
        drain_delay   = "${var.drain_delay_seconds}s"
        drain_timeout = "${var.drain_timeout_seconds}s"
        idle_timeout  = "${var.alb_idle_timeout + 15}s"
      }
      access_log = var.access_log
      identity   = var.identity
      policies   = var.policies
    },
    var.upstream == null ? {} : { upstream = var.upstream.url },
  ))

  # SIGTERM to SIGKILL: floodgate's drain_delay, then its drain_timeout, with a margin.
  stop_timeout = var.drain_delay_seconds + var.drain_timeout_seconds + 5

  # The image's own health check, for ECS (which ignores the Dockerfile's HEALTHCHECK): /healthz
  # over bash's /dev/tcp, as the image has no HTTP client.
  healthz_command = "exec 3<>/dev/tcp/127.0.0.1/${local.container_port} && printf 'GET /healthz HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && head -c 12 <&3 | grep -q ' 200'"
}

# ---- security groups ----------------------------------------------------------------------------
# Terraform removes the default allow-all egress rule of a group it creates: each group below
# allows only what is listed.

resource "aws_security_group" "alb" {
  name        = "${var.name}-alb"
  description = "floodgate ALB: HTTP and HTTPS from the allowed clients"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-alb" })
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  for_each          = toset(var.allowed_ingress_ipv4_cidrs)
  security_group_id = aws_security_group.alb.id
  description       = "HTTPS from clients"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_ingress_rule" "alb_http" {
  for_each          = toset(var.allowed_ingress_ipv4_cidrs)
  security_group_id = aws_security_group.alb.id
  description       = "HTTP from clients, redirected to HTTPS"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
}

resource "aws_vpc_security_group_egress_rule" "alb_to_tasks" {
  security_group_id            = aws_security_group.alb.id
  description                  = "Requests and health checks to floodgate"
  referenced_security_group_id = aws_security_group.tasks.id
  ip_protocol                  = "tcp"
  from_port                    = local.container_port
  to_port                      = local.container_port
}

resource "aws_security_group" "tasks" {
  name        = "${var.name}-tasks"
  description = "floodgate tasks: reachable from the ALB only"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-tasks" })
}

resource "aws_vpc_security_group_ingress_rule" "tasks_from_alb" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "From the ALB only: no one else can send a forged X-Forwarded-For"
  referenced_security_group_id = aws_security_group.alb.id
  ip_protocol                  = "tcp"
  from_port                    = local.container_port
  to_port                      = local.container_port
}

resource "aws_vpc_security_group_egress_rule" "tasks_to_redis" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "Rate-limit decisions on ElastiCache"
  referenced_security_group_id = aws_security_group.redis.id
  ip_protocol                  = "tcp"
  from_port                    = local.redis_port
  to_port                      = local.redis_port
}

resource "aws_vpc_security_group_egress_rule" "tasks_https" {
  security_group_id = aws_security_group.tasks.id
  description       = "Image pulls from ECR and logs to CloudWatch (through NAT or VPC endpoints)"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "tasks_to_upstream" {
  for_each          = var.upstream == null ? toset([]) : toset(var.upstream.cidr_blocks)
  security_group_id = aws_security_group.tasks.id
  description       = "Allowed requests proxied to the upstream API"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = var.upstream.port
  to_port           = var.upstream.port
}

resource "aws_security_group" "redis" {
  name        = "${var.name}-redis"
  description = "floodgate Redis: reachable from the floodgate tasks only"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-redis" })
}

resource "aws_vpc_security_group_ingress_rule" "redis_from_tasks" {
  security_group_id            = aws_security_group.redis.id
  description                  = "From the floodgate tasks only (the connection is plain TCP)"
  referenced_security_group_id = aws_security_group.tasks.id
  ip_protocol                  = "tcp"
  from_port                    = local.redis_port
  to_port                      = local.redis_port
}

# ---- ALB ----------------------------------------------------------------------------------------

resource "aws_lb" "this" {
  name               = var.name
  load_balancer_type = "application"
  internal           = var.internal
  subnets            = var.public_subnet_ids
  security_groups    = [aws_security_group.alb.id]
  idle_timeout       = var.alb_idle_timeout

  # Requests with malformed header names are dropped here rather than passed on.
  drop_invalid_header_fields = true
  # The ALB appends the client's address to X-Forwarded-For; floodgate takes the right-most
  # address that is not a trusted proxy, i.e. the one the ALB saw.
  xff_header_processing_mode = "append"

  enable_deletion_protection = var.deletion_protection
  tags                       = var.tags
}

resource "aws_lb_target_group" "floodgate" {
  name             = var.name
  vpc_id           = var.vpc_id
  target_type      = "ip" # Fargate tasks (awsvpc) register by address
  protocol         = "HTTP"
  protocol_version = "HTTP1"
  port             = local.container_port

  # When ECS stops a task it first deregisters it and waits this long for requests in flight
  # through the ALB, then sends SIGTERM; floodgate then keeps serving for drain_delay more (with
  # /readyz 503) before closing its listener. Equal values: the window in which the ALB may still
  # route to a task is covered on both sides, whichever way a task leaves.
  deregistration_delay = var.drain_delay_seconds

  # /readyz: 200 when Redis answers and the task is not draining. 5 s apart, 2 failures to take
  # a task out (10 s, within drain_delay), 2 successes to put it back.
  health_check {
    enabled             = true
    path                = "/readyz"
    port                = "traffic-port"
    protocol            = "HTTP"
    matcher             = "200"
    interval            = 5
    timeout             = 2
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }

  tags = var.tags
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.floodgate.arn
  }

  tags = var.tags
}

resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = "redirect"

    redirect {
      protocol    = "HTTPS"
      port        = "443"
      status_code = "HTTP_301"
    }
  }

  tags = var.tags
}

# ---- ElastiCache for Redis, cluster mode enabled ------------------------------------------------

resource "aws_elasticache_subnet_group" "redis" {
  name       = "${var.name}-redis"
  subnet_ids = var.private_subnet_ids
  tags       = var.tags
}

resource "aws_elasticache_replication_group" "redis" {
  replication_group_id = "${var.name}-redis"
  description          = "floodgate rate-limit state"
  engine               = "redis"
  engine_version       = var.redis_engine_version
  node_type            = var.redis_node_type
  port                 = local.redis_port
  parameter_group_name = var.redis_parameter_group_name

  # Cluster mode enabled: the keys are spread over num_node_groups shards (floodgate's keys of
  # one client share a hash tag, so one decision touches one shard).
  num_node_groups         = var.redis_shards
  replicas_per_node_group = var.redis_replicas_per_shard

  # A shard whose primary fails promotes a replica (in another zone).
  automatic_failover_enabled = true
  multi_az_enabled           = true

  subnet_group_name  = aws_elasticache_subnet_group.redis.name
  security_group_ids = [aws_security_group.redis.id]

  at_rest_encryption_enabled = true
  # TLS between the tasks and every node (floodgate's rediss-cluster:// store, local.store_url).
  transit_encryption_enabled = var.redis_transit_encryption

  # Rate-limit state expires within one period by itself: nothing worth a snapshot.
  snapshot_retention_limit   = 0
  auto_minor_version_upgrade = true
  apply_immediately          = false

  tags = var.tags
}

# ---- ECS Fargate --------------------------------------------------------------------------------

resource "aws_ecs_cluster" "this" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  tags = var.tags
}

resource "aws_cloudwatch_log_group" "floodgate" {
  name              = "/ecs/${var.name}"
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

# ECS itself uses this role to pull the image and write the logs. floodgate calls no AWS API, so
# the task has no task role.
resource "aws_iam_role" "execution" {
  name = "${var.name}-ecs-execution"

  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ecs-tasks.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })

  tags = var.tags
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

# How the config reaches floodgate: the whole floodgate.yaml in the environment variable
# FLOODGATE_CONFIG, which the container's command writes to /tmp before it execs floodgate
# (floodgate reads a file; Fargate cannot mount one). Chosen over an SSM parameter because a
# change of config is then a change of the task definition, which ECS rolls out by itself, one
# draining task at a time; an SSM value is read only when a task starts. The config holds no
# secret here (ElastiCache without AUTH). If yours gains one, move it to `secrets` (SSM
# SecureString or Secrets Manager) and grant the execution role read access.
#
# readonlyRootFilesystem stays false only because of that file: Fargate has no tmpfs. The
# process still runs as the image's non-root user (10001), for which every file of the image but
# /tmp is read-only.
resource "aws_ecs_task_definition" "floodgate" {
  family                   = var.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.task_cpu
  memory                   = var.task_memory
  execution_role_arn       = aws_iam_role.execution.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  container_definitions = jsonencode([{
    name      = local.container_name
    image     = var.container_image
    essential = true
    user      = "10001:10001"

    entryPoint = ["/bin/sh", "-c"]
    command = [
      "printf '%s\\n' \"$FLOODGATE_CONFIG\" > /tmp/floodgate.yaml && exec floodgate serve --config /tmp/floodgate.yaml",
    ]
    environment = [
      { name = "FLOODGATE_CONFIG", value = local.floodgate_config },
    ]

    portMappings = [{
      containerPort = local.container_port
      protocol      = "tcp"
    }]

    # SIGTERM drains; ECS sends SIGKILL after stopTimeout (at most 120 s on Fargate).
    stopTimeout = local.stop_timeout

    # server.max_connections (10000) sockets plus the Redis connections.
    ulimits = [{
      name      = "nofile"
      softLimit = 65536
      hardLimit = 65536
    }]

    healthCheck = {
      command     = ["CMD", "bash", "-c", local.healthz_command]
      interval    = 10
      timeout     = 3
      retries     = 3
      startPeriod = 10
    }

    readonlyRootFilesystem = false

    logConfiguration = {
      logDriver = "awslogs"
      options = {
        "awslogs-group"         = aws_cloudwatch_log_group.floodgate.name
        "awslogs-region"        = data.aws_region.current.name
        "awslogs-stream-prefix" = "floodgate"
      }
    }
  }])

  lifecycle {
    precondition {
      condition     = local.stop_timeout <= 120
      error_message = "drain_delay_seconds + drain_timeout_seconds + 5 must be at most 120: Fargate's stopTimeout cannot exceed 120 s, after which requests in flight would be cut."
    }
  }

  tags = var.tags
}

resource "aws_ecs_service" "floodgate" {
  name            = var.name
  cluster         = aws_ecs_cluster.this.id
  task_definition = aws_ecs_task_definition.floodgate.arn
  desired_count   = var.desired_count
  launch_type     = "FARGATE"

  # A new task must be healthy before an old one is stopped; a deployment whose tasks never get
  # healthy (a bad image, a config floodgate rejects) is rolled back.
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  # Time to connect to Redis and pass two health checks before ECS judges the task.
  health_check_grace_period_seconds = 30

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.floodgate.arn
    container_name   = local.container_name
    container_port   = local.container_port
  }

  propagate_tags = "SERVICE"
  tags           = var.tags

  # The target group must belong to a load balancer before a service can use it.
  depends_on = [aws_lb_listener.https]

  lifecycle {
    # Autoscaling owns the count once the service exists.
    ignore_changes = [desired_count]
  }
}

resource "aws_appautoscaling_target" "floodgate" {
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.this.name}/${aws_ecs_service.floodgate.name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.min_count
  max_capacity       = var.max_count
}

resource "aws_appautoscaling_policy" "cpu" {
  name               = "${var.name}-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.floodgate.service_namespace
  resource_id        = aws_appautoscaling_target.floodgate.resource_id
  scalable_dimension = aws_appautoscaling_target.floodgate.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value = var.cpu_target_percent

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }

    # Out quickly, in slowly: each task removed drains first.
    scale_out_cooldown = 60
    scale_in_cooldown  = 300
  }
}
