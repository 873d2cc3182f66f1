# selectchat in a container: built in one stage, run as a non-root user in
# a small one, the history on a volume.
#
#   docker build -t selectchat .
#   docker run -d -p 7007:7007 -v selectchat:/data selectchat
#
# Flags go after the image name, or as SELECTCHAT_<FLAG> variables.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin selectchat \
    && mkdir /data && chown selectchat /data
COPY --from=build /src/target/release/selectchat /usr/local/bin/selectchat
USER selectchat
WORKDIR /data
VOLUME /data
ENV CHAT_PORT=7007 SELECTCHAT_DB=/data/selectchat.db
EXPOSE 7007
# Stopping drains (BYE restarting spread over 5 s), within docker stop's 10 s.
STOPSIGNAL SIGUSR2
ENTRYPOINT ["/usr/local/bin/selectchat"]
