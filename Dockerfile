# The buildstream binary and the web app it serves, in one image; every role
# runs from it (`buildstream gateway`, `control user`, `edge`, ...).

FROM node:20-bookworm AS web
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/ ./
RUN npm run build

FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
      pkg-config libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin buildstream

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
      ca-certificates curl \
      gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
      gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-nice fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/buildstream --create-home buildstream
COPY --from=build /src/target/release/buildstream /usr/local/bin/buildstream
COPY --from=web /src/web/dist /usr/share/buildstream/web
USER buildstream
WORKDIR /var/lib/buildstream
ENV BUILDSTREAM_DATA_DIR=/var/lib/buildstream \
    BUILDSTREAM_WEB_DIR=/usr/share/buildstream/web
ENTRYPOINT ["buildstream"]
