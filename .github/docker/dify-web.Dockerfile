# Dify's web for a base path, as the project publishes it (ghcr.io/<owner>/dify-web:<Dify version>): the output of
# scripts/dify-web-build, the one recipe the real-Dify tests (tests/dify) also run, packaged the way Dify's own
# web/Dockerfile packages its production stage (same runtime environment, same entrypoint, same layout under /app).
#
# Build context: the recipe's output directory (it holds entrypoint.sh and the standalone server), e.g.
#   scripts/dify-web-build dify/ /dify out/
#   docker buildx build -f .github/docker/dify-web.Dockerfile --build-arg NEXT_PUBLIC_BASE_PATH=/dify out/
# The recipe runs in node:22-bookworm (.github/workflows/web-image.yml), so the standalone server's native
# modules match this base.
FROM node:22-bookworm-slim

ARG NEXT_PUBLIC_BASE_PATH=""
ENV NEXT_PUBLIC_BASE_PATH="$NEXT_PUBLIC_BASE_PATH"
ENV NODE_ENV=production
ENV EDITION=SELF_HOSTED
ENV DEPLOY_ENV=PRODUCTION
ENV CONSOLE_API_URL=http://127.0.0.1:5001
ENV APP_API_URL=http://127.0.0.1:5001
ENV MARKETPLACE_API_URL=https://marketplace.dify.ai
ENV MARKETPLACE_URL=https://marketplace.dify.ai
ENV PORT=3000
ENV NEXT_TELEMETRY_DISABLED=1
ENV TZ=UTC

# Dify's image runs as uid 1001 and owns /app.
RUN groupadd -g 1001 dify && useradd -u 1001 -g dify -d /home/dify -m -s /bin/sh dify
COPY --chown=1001:1001 . /app/
RUN chmod 0755 /app/entrypoint.sh

ARG COMMIT_SHA
ENV COMMIT_SHA=${COMMIT_SHA}

USER 1001
WORKDIR /app
EXPOSE 3000
ENTRYPOINT ["/bin/sh", "/app/entrypoint.sh"]
