#!/usr/bin/env ruby
# frozen_string_literal: true

# The reference scenario's frontend (App Mesh cross-VPC walkthrough's "Rails frontend"), Ruby 3.1
# standard library only: a small HTTP/1.1 server on TCPServer, one thread per connection.
#
#   GET /        -> an HTML page: "Rails frontend: Hello! from <IP> in <AZ>", then the body of the
#                   nodejs backend and of the crystal backend (each "no backend found" when it fails
#                   or does not answer within BACKEND_TIMEOUT), reloading itself every
#                   REFRESH_SECONDS
#   GET /health  -> "Healthy!\n"
#   anything else -> 404; methods other than GET/HEAD on the paths above -> 405;
#   a malformed request -> 400 (431 for an oversized head), then the connection is closed.
#
# Environment: PORT (default 3000; 0 picks a free port), BIND_ADDRESS (default 0.0.0.0),
# HOST_IP (the address to report; default: the host's first non-loopback IPv4, see host_ip),
# AZ (the zone to report; default "unknown"),
# NODEJS_URL (default http://nodejs.appmeshworkshop.hosted.local:3000/),
# CRYSTAL_URL (default http://crystal.appmeshworkshop.hosted.local:3000/crystal),
# BACKEND_TIMEOUT seconds (default 2: the whole fetch of one backend, name lookup, connect and
# read), REFRESH_SECONDS (default 3).
# Prints "listening on ADDR:PORT" once it accepts connections, then one access line per request
# on stdout. SIGTERM/SIGINT: closes the listener, drops open connections and exits 0.

require 'socket'
require 'net/http'
require 'uri'
require 'cgi'
require 'time'

# The address this host is reached at: HOST_IP if set, else the first IPv4 address that is not
# loopback (127/8) nor link-local (169.254/16) of an interface that is up and running, in the
# kernel's interface order (Socket.getifaddrs is getifaddrs(3)). Reading the interfaces needs no
# route, so it works in a network namespace whose only interface is a veth with no default route.
def host_ip
  env = ENV.fetch('HOST_IP', '')
  return env unless env.empty?

  Socket.getifaddrs.each do |ifa|
    next unless (ifa.flags & Socket::IFF_UP) != 0 && (ifa.flags & Socket::IFF_RUNNING) != 0
    addr = ifa.addr
    next unless addr&.ipv4?
    ip = addr.ip_address
    next if ip.start_with?('127.', '169.254.')
    return ip
  end
  '127.0.0.1'
end

def env_or(name, default)
  value = ENV.fetch(name, '')
  value.empty? ? default : value
end

IP = host_ip
ZONE = env_or('AZ', 'unknown')
NODEJS_URL = URI(env_or('NODEJS_URL', 'http://nodejs.appmeshworkshop.hosted.local:3000/'))
CRYSTAL_URL = URI(env_or('CRYSTAL_URL', 'http://crystal.appmeshworkshop.hosted.local:3000/crystal'))
BACKEND_TIMEOUT = Float(env_or('BACKEND_TIMEOUT', '2'))
REFRESH_SECONDS = Integer(env_or('REFRESH_SECONDS', '3'))
NO_BACKEND = 'no backend found'

MAX_LINE = 8192        # bytes of the request line or of one header line
MAX_HEADERS = 100      # header lines per request
MAX_BODY = 1 << 20     # a request body (read and dropped) larger than this closes the connection
IDLE_TIMEOUT = 60      # seconds a connection may wait for its first or next request
HEAD_TIMEOUT = 10      # seconds a client has to send a whole request head

TOKEN = /\A[!\#$%&'*+\-.^_`|~0-9A-Za-z]+\z/.freeze
REQUEST_LINE = %r{\A([!\#$%&'*+\-.^_`|~0-9A-Za-z]+) ([^ \x00-\x1f\x7f]+) HTTP/(1)\.([01])\z}.freeze
# Bytes that cannot appear in a request line (controls other than the CR of its CRLF, non-ASCII).
NOT_IN_REQUEST_LINE = /[\x00-\x0c\x0e-\x1f\x7f-\xff]/n.freeze
# A well-formed request line of another HTTP version: answered 505.
OTHER_VERSION = %r{\A\S+ \S+ HTTP/\d\.\d\z}.freeze
REASONS = {
  200 => 'OK', 400 => 'Bad Request', 404 => 'Not Found', 405 => 'Method Not Allowed',
  408 => 'Request Timeout', 413 => 'Content Too Large', 414 => 'URI Too Long',
  431 => 'Request Header Fields Too Large', 501 => 'Not Implemented',
  505 => 'HTTP Version Not Supported'
}.freeze

def now
  Process.clock_gettime(Process::CLOCK_MONOTONIC)
end

# A request the server refuses: the status to answer before closing the connection.
class BadRequest < StandardError
  attr_reader :status

  def initialize(status, message)
    super(message)
    @status = status
  end
end

# Buffered reads from one client socket, every read bounded by a deadline. Owned by the
# connection's thread.
class Reader
  def initialize(sock)
    @sock = sock
    @buf = +''
    @buf.force_encoding(Encoding::BINARY)
  end

  # The next line without its CRLF (or LF); nil on EOF before any byte. Raises BadRequest when
  # the line is longer than max, the deadline passes, or a byte of it matches forbidden (checked
  # as bytes arrive, so a client speaking another protocol, say a TLS ClientHello, is refused
  # at once rather than when its line would end). With idle_is_eof, a deadline passing before
  # any byte came is an EOF (an idle connection is closed without an answer).
  def line(max, deadline, forbidden: nil, idle_is_eof: false, too_long: 431)
    loop do
      i = @buf.index("\n")
      if forbidden && forbidden.match?(i ? @buf[0, i] : @buf)
        raise BadRequest.new(400, 'not an HTTP/1.x request line')
      end
      if i
        raise BadRequest.new(too_long, 'line too long') if i > max
        return @buf.slice!(0, i + 1).chomp("\n").chomp("\r")
      end
      raise BadRequest.new(too_long, 'line too long') if @buf.bytesize > max
      chunk = fill(deadline, idle_is_eof && @buf.empty?)
      return nil if chunk.nil? && @buf.empty?
      raise BadRequest.new(400, 'connection closed mid-line') if chunk.nil?
    end
  end

  # Reads and drops n bytes.
  def skip(n, deadline)
    while n.positive?
      if @buf.empty?
        raise BadRequest.new(400, 'connection closed mid-body') if fill(deadline, false).nil?
      end
      take = [n, @buf.bytesize].min
      @buf.slice!(0, take)
      n -= take
    end
  end

  private

  # Appends what the socket has; nil on EOF (and on the deadline when timeout_is_eof).
  def fill(deadline, timeout_is_eof)
    loop do
      chunk = @sock.read_nonblock(16 * 1024, exception: false)
      case chunk
      when :wait_readable
        left = deadline - now
        next if left.positive? && @sock.wait_readable(left)
        return nil if timeout_is_eof
        raise BadRequest.new(408, 'timed out')
      when nil
        return nil
      else
        @buf << chunk
        return chunk
      end
    end
  rescue Errno::ECONNRESET, Errno::EPIPE, IOError
    nil
  end
end

# GETs url; its body (stripped) on a 2xx answer within timeout seconds, else nil. Net::HTTP's own
# timeouts bound the name lookup with the connect, and each read; the caller bounds the whole
# fetch. No HTTP proxy, whatever http_proxy says: the app calls its backends directly, as the
# walkthrough's does (the mesh intercepts below it).
def fetch(url, timeout)
  Net::HTTP.start(url.host, url.port, nil, open_timeout: timeout, read_timeout: timeout,
                                           write_timeout: timeout) do |http|
    response = http.request_get(url.request_uri)
    return nil unless response.is_a?(Net::HTTPSuccess)
    body = response.body.to_s.dup.force_encoding(Encoding::UTF_8)
    body = body.scrub unless body.valid_encoding?
    body.strip
  end
rescue StandardError, Timeout::Error
  nil
end

# The bodies of the nodejs and crystal backends, fetched side by side so a dead one delays
# nothing but its own line; whichever has not answered within BACKEND_TIMEOUT of the start
# reads NO_BACKEND (its thread is abandoned and killed).
def backend_lines
  deadline = now + BACKEND_TIMEOUT
  threads = [NODEJS_URL, CRYSTAL_URL].map do |url|
    Thread.new do
      Thread.current.report_on_exception = false
      fetch(url, BACKEND_TIMEOUT)
    end
  end
  threads.map do |t|
    finished = t.join([deadline - now, 0].max)
    if finished
      (t.value rescue nil) || NO_BACKEND
    else
      t.kill
      NO_BACKEND
    end
  end
end

def page
  nodejs, crystal = backend_lines
  h = ->(s) { CGI.escapeHTML(s) }
  <<~HTML
    <!DOCTYPE html>
    <html lang="en">
    <head>
    <meta charset="utf-8">
    <meta http-equiv="refresh" content="#{REFRESH_SECONDS}">
    <title>App Mesh cross-VPC demo</title>
    </head>
    <body>
    <p id="frontend">#{h.call("Rails frontend: Hello! from #{IP} in #{ZONE}")}</p>
    <p id="nodejs">#{h.call(nodejs)}</p>
    <p id="crystal">#{h.call(crystal)}</p>
    </body>
    </html>
  HTML
end

# [status, content type, body, extra headers] for one request.
def route(method, target)
  path = target.split('?', 2).first
  unless ['/', '/health'].include?(path)
    return [404, 'text/plain; charset=utf-8', "Not Found\n", {}]
  end
  unless %w[GET HEAD].include?(method)
    return [405, 'text/plain; charset=utf-8', "Method Not Allowed\n", { 'Allow' => 'GET, HEAD' }]
  end
  return [200, 'text/plain; charset=utf-8', "Healthy!\n", {}] if path == '/health'

  [200, 'text/html; charset=utf-8', page, { 'Cache-Control' => 'no-store' }]
end

def write_response(sock, status, type, body, headers, keep_alive, head_only)
  body = body.b
  out = +"HTTP/1.1 #{status} #{REASONS.fetch(status, 'Unknown')}\r\n"
  out << "Date: #{Time.now.httpdate}\r\n"
  out << "Content-Type: #{type}\r\n"
  out << "Content-Length: #{body.bytesize}\r\n"
  headers.each { |k, v| out << "#{k}: #{v}\r\n" }
  out << "Connection: #{keep_alive ? 'keep-alive' : 'close'}\r\n\r\n"
  out = out.b
  out << body unless head_only
  sock.write(out)
  head_only ? 0 : body.bytesize
end

# One line per request: time, client, request line, status, body bytes, duration.
def access_log(client, request_line, status, bytes, started)
  ms = (now - started) * 1000
  $stdout.write("#{Time.now.utc.iso8601(3)} #{client} \"#{request_line}\" #{status} #{bytes} " \
                "#{format('%.1f', ms)}ms\n")
end

# Reads the head of one request; [method, target, minor version, headers (lowercase names)], or
# nil on a clean EOF before the request line.
def read_head(reader)
  line = reader.line(MAX_LINE, now + IDLE_TIMEOUT, forbidden: NOT_IN_REQUEST_LINE,
                                                  too_long: 414, idle_is_eof: true)
  return nil if line.nil?
  # Tolerate one empty line before a request (RFC 9112 §2.2).
  if line.empty?
    line = reader.line(MAX_LINE, now + HEAD_TIMEOUT, forbidden: NOT_IN_REQUEST_LINE, too_long: 414)
  end
  return nil if line.nil?
  m = REQUEST_LINE.match(line.b)
  unless m
    raise BadRequest.new(505, 'unsupported HTTP version') if OTHER_VERSION.match?(line.b)
    raise BadRequest.new(400, "malformed request line #{line.b.inspect[0, 80]}")
  end
  headers = {}
  count = 0
  deadline = now + HEAD_TIMEOUT
  loop do
    h = reader.line(MAX_LINE, deadline)
    raise BadRequest.new(400, 'connection closed in the head') if h.nil?
    break if h.empty?
    count += 1
    raise BadRequest.new(431, 'too many header lines') if count > MAX_HEADERS
    name, sep, value = h.partition(':')
    raise BadRequest.new(400, 'malformed header line') if sep.empty? || !TOKEN.match?(name)
    key = name.downcase
    value = value.strip
    headers[key] = headers.key?(key) ? "#{headers[key]}, #{value}" : value
  end
  [m[1], m[2], m[4].to_i, headers]
end

def serve_connection(sock)
  client = sock.remote_address.ip_address rescue '-'
  reader = Reader.new(sock)
  loop do
    started = nil
    request_line = '-'
    begin
      head = read_head(reader)
      return if head.nil?
      started = now
      method, target, minor, headers = head
      request_line = "#{method} #{target} HTTP/1.#{minor}"
      if headers.key?('transfer-encoding')
        raise BadRequest.new(501, 'request bodies in chunked encoding are not supported')
      end
      length = headers.fetch('content-length', '0')
      raise BadRequest.new(400, 'bad content-length') unless /\A\d{1,12}\z/.match?(length)
      raise BadRequest.new(413, 'body too large') if length.to_i > MAX_BODY
      reader.skip(length.to_i, now + HEAD_TIMEOUT)
      connection = headers.fetch('connection', '').downcase.split(',').map(&:strip)
      keep_alive = minor == 1 ? !connection.include?('close') : connection.include?('keep-alive')
      status, type, body, extra = route(method, target)
      bytes = write_response(sock, status, type, body, extra, keep_alive, method == 'HEAD')
      access_log(client, request_line, status, bytes, started)
      return unless keep_alive
    rescue BadRequest => e
      body = "#{REASONS.fetch(e.status)}\n"
      bytes = write_response(sock, e.status, 'text/plain; charset=utf-8', body, {}, false, false)
      access_log(client, started ? request_line : "(#{e.message})", e.status, bytes, started || now)
      return
    end
  end
rescue Errno::ECONNRESET, Errno::EPIPE, IOError
  nil
ensure
  sock.close unless sock.closed?
end

$stdout.sync = true
bind = env_or('BIND_ADDRESS', '0.0.0.0')
port = Integer(env_or('PORT', '3000'), exception: false)
abort("frontend: PORT=#{ENV['PORT']} is not a port number") if port.nil?
begin
  server = TCPServer.new(bind, port)
rescue SystemCallError, SocketError => e
  abort("frontend: cannot listen on #{bind}:#{port}: #{e.message}")
end

# The signal only wakes the main thread (trap handlers run there); the log line and exit happen
# outside trap context.
shutdown = Queue.new
%w[TERM INT].each { |sig| Signal.trap(sig) { shutdown << sig } }

acceptor = Thread.new do
  loop do
    sock = server.accept
    Thread.new(sock) do |s|
      Thread.current.report_on_exception = false
      serve_connection(s)
    end
  rescue IOError, Errno::EBADF
    break # the listener was closed: shutting down
  rescue SystemCallError
    next # EMFILE, ECONNABORTED...: keep serving the others
  end
end

addr = server.local_address
puts "frontend: listening on #{addr.ip_address}:#{addr.ip_port} as #{IP} in #{ZONE}; " \
     "backends #{NODEJS_URL} #{CRYSTAL_URL}"
sig = shutdown.pop
puts "frontend: SIG#{sig}, exiting"
server.close
acceptor.join(0.5)
exit 0
