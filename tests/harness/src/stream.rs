//! Driving one HTTP stream through the filter, as Envoy's filter manager would.

use crate::abi::{Action, len_u32};
use crate::error::{Error, Result};
use crate::types::{CallResponse, Callout, LocalResponse, Message};
use crate::vm::{StreamState, Vm, headers};

/// One HTTP stream (an HTTP context of the filter). Each call returns the filter's [`Action`];
/// what the filter did to the request and response is read back with [`HttpStream::request`],
/// [`HttpStream::response`] and [`HttpStream::local_response`].
#[derive(Debug)]
pub struct HttpStream<'vm> {
    vm: &'vm mut Vm,
    id: u32,
    finished: bool,
}

impl<'vm> HttpStream<'vm> {
    pub(crate) fn new(vm: &'vm mut Vm, id: u32) -> Self {
        Self {
            vm,
            id,
            finished: false,
        }
    }

    /// The stream's context id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The VM, e.g. to answer a callout another stream made.
    pub fn vm(&mut self) -> &mut Vm {
        self.vm
    }

    /// Sets a property only this stream sees (`source.address`, `route_name`, ...). The
    /// `request.*` properties are derived from the request headers unless set here.
    pub fn set_property(&mut self, path: &str, value: impl Into<Vec<u8>>) -> &mut Self {
        if let Ok(state) = self.state_mut() {
            state.properties.insert(path.to_owned(), value.into());
        }
        self
    }

    /// The request as it leaves the filter (headers, body, trailers).
    pub fn request(&self) -> Message {
        self.state().map(|s| s.request.clone()).unwrap_or_default()
    }

    /// The response as it leaves the filter.
    pub fn response(&self) -> Message {
        self.state().map(|s| s.response.clone()).unwrap_or_default()
    }

    /// The response the filter sent itself, if it did.
    pub fn local_response(&self) -> Option<LocalResponse> {
        self.state().and_then(|s| s.local_response.clone())
    }

    /// Whether the filter resumed the request it had paused (`proxy_continue_stream`).
    pub fn request_resumed(&self) -> bool {
        self.state().is_some_and(|s| s.request_resumed > 0)
    }

    /// Whether the filter resumed the response it had paused.
    pub fn response_resumed(&self) -> bool {
        self.state().is_some_and(|s| s.response_resumed > 0)
    }

    /// Whether the filter reset the stream (`proxy_close_stream`).
    pub fn was_reset(&self) -> bool {
        self.state().is_some_and(|s| s.reset)
    }

    /// Callouts this stream dispatched that are still waiting for an answer.
    pub fn callouts(&self) -> Vec<Callout> {
        self.vm
            .callouts()
            .into_iter()
            .filter(|c| c.context_id == self.id)
            .collect()
    }

    /// Answers a callout (see [`Vm::respond`]).
    pub fn respond(&mut self, token: u32, response: CallResponse) -> Result<()> {
        self.vm.respond(token, response)
    }

    /// Fails a callout (see [`Vm::fail_callout`]).
    pub fn fail_callout(&mut self, token: u32) -> Result<()> {
        self.vm.fail_callout(token)
    }

    /// Request headers arrive (`on_http_request_headers`).
    pub fn request_headers(
        &mut self,
        pairs: &[(&str, &str)],
        end_of_stream: bool,
    ) -> Result<Action> {
        let count = len_u32(pairs.len());
        self.state_mut()?.request.headers = headers(pairs);
        self.run(
            "proxy_on_request_headers",
            (self.id, count, u32::from(end_of_stream)),
        )
    }

    /// A request body chunk arrives (`on_http_request_body`). While the filter returns `Pause`
    /// the chunks accumulate in the buffer it sees, as with Envoy's `StopIterationAndBuffer`.
    pub fn request_body(&mut self, chunk: &[u8], end_of_stream: bool) -> Result<Action> {
        let size = {
            let state = self.state_mut()?;
            state.request_buffer.extend_from_slice(chunk);
            len_u32(state.request_buffer.len())
        };
        let action = self.run(
            "proxy_on_request_body",
            (self.id, size, u32::from(end_of_stream)),
        )?;
        if action == Action::Continue {
            let state = self.state_mut()?;
            let buffered = std::mem::take(&mut state.request_buffer);
            state.request.body.extend_from_slice(&buffered);
        }
        Ok(action)
    }

    /// Request trailers arrive (`on_http_request_trailers`).
    pub fn request_trailers(&mut self, pairs: &[(&str, &str)]) -> Result<Action> {
        let count = len_u32(pairs.len());
        self.state_mut()?.request.trailers = headers(pairs);
        self.run("proxy_on_request_trailers", (self.id, count))
    }

    /// Response headers arrive (`on_http_response_headers`).
    pub fn response_headers(
        &mut self,
        pairs: &[(&str, &str)],
        end_of_stream: bool,
    ) -> Result<Action> {
        let count = len_u32(pairs.len());
        self.state_mut()?.response.headers = headers(pairs);
        self.run(
            "proxy_on_response_headers",
            (self.id, count, u32::from(end_of_stream)),
        )
    }

    /// A response body chunk arrives (`on_http_response_body`); buffering as for requests.
    pub fn response_body(&mut self, chunk: &[u8], end_of_stream: bool) -> Result<Action> {
        let size = {
            let state = self.state_mut()?;
            state.response_buffer.extend_from_slice(chunk);
            len_u32(state.response_buffer.len())
        };
        let action = self.run(
            "proxy_on_response_body",
            (self.id, size, u32::from(end_of_stream)),
        )?;
        if action == Action::Continue {
            let state = self.state_mut()?;
            let buffered = std::mem::take(&mut state.response_buffer);
            state.response.body.extend_from_slice(&buffered);
        }
        Ok(action)
    }

    /// Response trailers arrive (`on_http_response_trailers`).
    pub fn response_trailers(&mut self, pairs: &[(&str, &str)]) -> Result<Action> {
        let count = len_u32(pairs.len());
        self.state_mut()?.response.trailers = headers(pairs);
        self.run("proxy_on_response_trailers", (self.id, count))
    }

    /// Ends the stream: `on_done`, `on_log`, `on_delete`, as Envoy does when a stream completes.
    pub fn finish(mut self) -> Result<()> {
        self.finished = true;
        self.vm.finish_stream(self.id)
    }

    fn run<P: wasmtime::WasmParams>(&mut self, name: &'static str, params: P) -> Result<Action> {
        let raw: u32 = self.vm.call_on(self.id, name, params)?;
        Ok(Action::from_abi(raw))
    }

    fn state(&self) -> Option<&StreamState> {
        self.vm.state().streams.get(&self.id)
    }

    fn state_mut(&mut self) -> Result<&mut StreamState> {
        let id = self.id;
        self.vm
            .state_mut()
            .streams
            .get_mut(&id)
            .ok_or_else(|| Error::Misuse(format!("stream {id} is already finished")))
    }
}

impl Drop for HttpStream<'_> {
    fn drop(&mut self) {
        if !self.finished && !self.vm.is_dead() {
            // Errors here have no one to go to; a test that cares calls `finish` itself.
            let _ = self.vm.finish_stream(self.id);
        }
    }
}
